#include "fanwire/sink.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

namespace fanwire {
Sink::Sink(uint64_t id, std::vector<std::shared_ptr<Subscriber>> subs, Options options)
    : id_(id), stream_(Encoding::sse, std::move(subs), /*end_when_empty=*/true), fd_(options.fd),
      last_write_(Clock::now()),
      heartbeat_(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(options.heartbeat_seconds))),
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
  if (ended_locked()) return blocked_locked() ? Pumped::blocked : Pumped::idle;
  // Bounded rounds keep one very hot stream from starving the others.
  for (int round = 0; round < 8; ++round) {
    std::string body;
    const bool more = fill_locked(body);
    if (!body.empty() && !write_locked(body, now)) return Pumped::blocked;
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

// Takes the injected bytes, then what the stream has ready (every topic in id order, the
// notices of topics that ended, the end notice if it ended), into `body`; then parks the
// subscribers. Returns true if one of them had more ready meanwhile (the caller loops).
bool Sink::fill_locked(std::string& body) {
  body.append(injected_);  // taken before anything that became ready since (inject)
  injected_.clear();
  take_ready_locked(body);
  if (ended_locked()) return false;
  return !stream_.arm();
}

void Sink::take_ready_locked(std::string& body) {
  stream_.take(taken_);
  taken_.append_to(body);
  frames_ += taken_.message_count();
  const bool left = std::any_of(taken_.topics().begin(), taken_.topics().end(),
                                [](const TopicTake& t) { return t.ended; });
  taken_.clear();
  tell_end_locked();
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
  write_locked(body, now);
  tell_end_locked();
}

// Appends `body` as one HTTP/1.1 chunk, then writes as much as the socket takes.
// Returns false while bytes remain (socket full).
bool Sink::write_locked(std::string_view body, Clock::time_point now) {
  if (!body.empty()) {
    char hex[20];
    auto [end, ec] = std::to_chars(hex, hex + sizeof hex, body.size(), 16);
    out_.append(hex, end).append("\r\n").append(body).append("\r\n");
    last_write_ = now;
  }
  while (out_offset_ < out_.size()) {
    const ssize_t n = ::send(fd_, out_.data() + out_offset_, out_.size() - out_offset_,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out_offset_ += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return false;
    } else {
      out_offset_ = out_.size();  // the peer is gone: nothing more can be written
      stream_.finish(StreamEnd::client_gone);
      tell_end_locked();
    }
  }
  out_.clear();
  out_offset_ = 0;
  return true;
}

// Tells the loop once that the stream ended on its own (not when Python closed it).
void Sink::tell_end_locked() {
  if (told_ || stream_.end() == StreamEnd::none) return;
  told_ = true;
  if (!closed_ && loop_) loop_->push(loop_waiter_ | Notifier::kClosingBit, true);
}

void Sink::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;  // whatever ended it before: Python is done with it
    told_ = true;
    stream_.finish(StreamEnd::closed);
    out_.clear();
    out_offset_ = 0;
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

void Sink::release_fd() {
  std::lock_guard lock(mu_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
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
