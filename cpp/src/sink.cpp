#include "fanwire/sink.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

namespace fanwire {
namespace {
Clock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}
// The end of a chunked response: after a clean end the client sees a finished response.
constexpr std::string_view kLastChunk = "0\r\n\r\n";
}  // namespace

Sink::Sink(uint64_t id, std::vector<std::shared_ptr<Subscriber>> subs, Options options)
    : id_(id), stream_(Encoding::sse, std::move(subs), /*end_when_empty=*/true), fd_(options.fd),
      last_write_(Clock::now()),
      heartbeat_(std::max(to_duration(options.heartbeat_seconds),
                          Clock::duration(std::chrono::milliseconds(10)))),
      close_grace_(to_duration(std::max(0.0, options.close_grace_seconds))),
      loop_(std::move(options.loop)), loop_waiter_(options.loop_waiter),
      ready_(std::move(options.ready)) {
  if (!options.preamble.empty()) write_locked(options.preamble, last_write_);
}

Sink::~Sink() {
  if (fd_ >= 0) ::close(fd_);
}

Sink::Pumped Sink::pump(Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (blocked_locked() && !write_locked({}, now)) {
    check_closing_locked(now);  // a stalled client must still be closed
    return Pumped::blocked;
  }
  if (ended_locked()) {
    // An end taken by inject() waits in injected_; then the last chunk (write_locked).
    if (!closed_) {
      std::string body;
      body.swap(injected_);
      write_locked(body, now);
    }
    return blocked_locked() ? Pumped::blocked : Pumped::idle;
  }
  // Bounded rounds keep one very hot stream from starving the others.
  for (int round = 0; round < 8; ++round) {
    std::string injected;
    injected.swap(injected_);  // taken before anything that became ready since (inject)
    const bool more = fill_locked();
    if (!write_locked(injected, now)) return Pumped::blocked;
    if (ended_locked() || !more) return blocked_locked() ? Pumped::blocked : Pumped::idle;
  }
  return Pumped::again;
}

bool Sink::tick(Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (!ended_locked() && !blocked_locked() && now - last_write_ >= heartbeat_)
    return !write_locked(notice::heartbeat(Encoding::sse, notice::now()), now);
  return blocked_locked();
}

void Sink::on_readable(Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (fd_ < 0 || closed_) return;
  char buf[512];  // an SSE client sends nothing after its request: this only sees it go
  while (true) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    outbox_.clear();  // end of file or an error: the client left (an ended stream's
                      // last bytes no longer wait for it either)
    last_chunk_due_ = false;
    stream_.finish(StreamEnd::client_gone);
    on_end_locked(now);
    return;
  }
}

Clock::time_point Sink::next_deadline(Clock::time_point now, Clock::time_point cap) const {
  std::lock_guard lock(mu_);
  if (ended_locked()) return std::min(ended_at_ + close_grace_, cap);
  // A full socket gets no heartbeat (and its last write stays old): look again later.
  if (blocked_locked()) return now + heartbeat_;
  return last_write_ + heartbeat_;
}

Sink::Over Sink::over(Clock::time_point now, Clock::time_point cap) const {
  std::lock_guard lock(mu_);
  if (done_) return Over::no;
  if (closed_) return Over::close;
  if (!ended_locked()) return Over::no;
  if (!blocked_locked()) return Over::close;
  return now >= std::min(ended_at_ + close_grace_, cap) ? Over::reset : Over::no;
}

void Sink::retire(bool reset) {
  bool tell = false;
  {
    std::lock_guard lock(mu_);
    if (done_) return;
    done_ = true;
    if (fd_ >= 0) {
      if (reset) {
        const linger hard{1, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
      }
      ::close(fd_);
      fd_ = -1;
    }
    outbox_.clear();
    tell = !closed_ && loop_;
  }
  if (tell) loop_->push(loop_waiter_ | Notifier::kClosingBit, true);
}

bool Sink::done() const {
  std::lock_guard lock(mu_);
  return done_;
}

// Takes what the stream has ready (every topic in id order, the notices of topics that
// ended, the end notice if it ended) into taken_; then parks the subscribers. Returns true
// if one of them had more ready meanwhile (the caller loops).
bool Sink::fill_locked() {
  take_locked();
  if (ended_locked()) return false;
  return !stream_.arm();
}

// The same, copied into `body` (taken_ is left empty).
void Sink::take_ready_locked(std::string& body) {
  take_locked();
  taken_.append_to(body);
  taken_.clear();
}

void Sink::take_locked() {
  stream_.take(taken_);
  frames_ += taken_.message_count();
  const bool left = std::any_of(taken_.topics().begin(), taken_.topics().end(),
                                [](const TopicTake& t) { return t.ended; });
  on_end_locked(Clock::now());
  // A topic left while the stream goes on (ended by its producer, deleted): the loop
  // learns of it now (Subscription.wake: occupancy), not when the stream closes.
  if (left && stream_.end() == StreamEnd::none && !closed_ && loop_)
    loop_->push(loop_waiter_, true);
}

// While the socket is full nothing is taken, but a disconnect (slow consumer) or a
// shutdown must still end the stream (the Stream's rule): its notice is queued behind
// the stuck bytes.
void Sink::check_closing_locked(Clock::time_point now) {
  if (ended_locked()) return;
  std::string body;
  if (!stream_.end_if_closing(body)) return;
  on_end_locked(now);
  write_locked(body, now);
}

// Writes `body`, then the last take if any (taken_, cleared after the send), as one
// HTTP/1.1 chunk after what waits: views of each message's shared encoding, never copied
// unless the socket refuses them. Returns false while bytes remain (socket full).
bool Sink::write_locked(std::string_view body, Clock::time_point now) {
  const size_t size = body.size() + taken_.byte_size();
  if (size > 0) {
    gather_chunk_head(size);
    outbox_.gather(body);
    for (const auto& piece : taken_.pieces()) outbox_.gather(taken_.bytes(piece));
    outbox_.gather("\r\n");
    last_write_ = now;
  }
  const bool sent = send_locked(now);
  taken_.clear();  // after the send: the views point into its messages
  return sent;
}

void Sink::gather_chunk_head(size_t size) {
  auto [end, ec] = std::to_chars(chunk_head_, chunk_head_ + sizeof chunk_head_ - 2, size, 16);
  *end++ = '\r';
  *end++ = '\n';
  outbox_.gather(std::string_view(chunk_head_, static_cast<size_t>(end - chunk_head_)));
}

// Sends what waits and what was gathered (then the last chunk, once due). False while
// bytes remain.
bool Sink::send_locked(Clock::time_point now) {
  if (last_chunk_due_ && injected_.empty()) {  // after everything the stream had
    outbox_.gather(kLastChunk);
    last_chunk_due_ = false;
  }
  if (fd_ < 0) {  // retired: nothing can be written any more
    outbox_.clear();
    return true;
  }
  if (outbox_.send(fd_) != Outbox::Sent::gone) return !outbox_.blocked();
  stream_.finish(StreamEnd::client_gone);  // the peer is gone: nothing more can be written
  on_end_locked(now);
  return true;
}

// Once the stream ended: its close grace starts, and after a clean end the last chunk is
// due after what the end took (written by the next write_locked; the Writer closes the
// socket once it is out: retire()).
void Sink::on_end_locked(Clock::time_point now) {
  if (ended_seen_ || stream_.end() == StreamEnd::none) return;
  ended_seen_ = true;
  ended_at_ = now;
  const StreamEnd end = stream_.end();
  last_chunk_due_ = end == StreamEnd::no_topics || end == StreamEnd::shutdown;
}

void Sink::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;  // whatever ended it before: Python is done with it
    stream_.finish(StreamEnd::closed);
    outbox_.clear();
  }
  if (ready_) ready_->push(id_, true);
}

void Sink::inject(std::string bytes) {
  {
    std::lock_guard lock(mu_);
    if (ended_locked()) return;
    // What is ready now goes first, so that the notice (a gap) sits exactly between it
    // and whatever the caller publishes next, however late this thread writes.
    take_ready_locked(injected_);
    injected_.append(bytes);
  }
  if (ready_) ready_->push(id_, true);
}

SinkEnd Sink::end() const {
  std::lock_guard lock(mu_);
  return closed_ ? SinkEnd::closed : stream_.end();
}

bool Sink::flushed() const {
  std::lock_guard lock(mu_);
  return !blocked_locked();
}

uint64_t Sink::frames_written() const {
  std::lock_guard lock(mu_);
  return frames_;
}

}  // namespace fanwire
