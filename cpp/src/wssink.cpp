#include "fanwire/wssink.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace fanwire {
namespace {
Clock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(std::max(0.0, seconds)));
}
// The close code for why the engine ended the stream (PROTOCOL.md; ws.py's CLOSE_CODES).
uint16_t close_code_for(StreamEnd end) {
  switch (end) {
    case StreamEnd::shutdown: return ws::kGoingAway;
    case StreamEnd::slow_consumer: return ws::kPolicy;
    default: return ws::kNormal;
  }
}
// Bounded rounds keep one very hot connection from starving the others.
constexpr int kRounds = 8;
// Bytes of client messages waiting for Python past which the socket is not read: the
// client's sends then block in TCP, as uvicorn pauses reading while a message waits.
constexpr size_t kInboxLimit = 1 << 20;
}  // namespace

WsSink::WsSink(uint64_t id, Options options)
    : id_(id), stream_(Encoding::ws_frame, {}, /*end_when_empty=*/false),
      reader_(options.max_message), fd_(options.fd), last_write_(Clock::now()),
      heartbeat_(to_duration(options.heartbeat_seconds)),
      ping_interval_(to_duration(options.ping_interval)),
      ping_timeout_(to_duration(options.ping_timeout)),
      close_grace_(to_duration(options.close_grace_seconds)),
      next_ping_(last_write_ + ping_interval_), loop_(std::move(options.loop)),
      inbox_loop_(std::move(options.inbox)), loop_waiter_(options.loop_waiter),
      ready_(std::move(options.ready)), replies_(std::move(options.replies)) {}

WsSink::~WsSink() {
  if (fd_ >= 0) ::close(fd_);
}

Channel::Pumped WsSink::pump(Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (blocked_locked() && !write_locked({}, now)) {
    check_closing_locked(now);  // a stalled client must still be closed
    return Pumped::blocked;
  }
  if (ended_locked()) return blocked_locked() ? Pumped::blocked : Pumped::idle;
  if (held_) return Pumped::idle;  // release() wakes the writer again
  for (int round = 0; round < kRounds; ++round) {
    std::string frames;
    frames.swap(pending_);  // Python's frames first: they were queued before this take
    take_locked();
    outbox_.gather(frames);  // then the events: views of their shared encodings
    for (const auto& piece : taken_.pieces()) outbox_.gather(taken_.bytes(piece));
    if (!frames.empty() || !taken_.pieces().empty()) last_write_ = now;
    // The end's notice was the take's last frame: the close follows it, nothing else.
    std::string close;
    if (stream_.end() != StreamEnd::none) close = close_frame_locked(close_code_for(stream_.end()), now);
    outbox_.gather(close);
    const bool sent = write_locked({}, now);
    taken_.clear();  // after the write: the views point into its messages
    if (!sent) return Pumped::blocked;
    if (ended_locked() || stream_.arm()) return blocked_locked() ? Pumped::blocked : Pumped::idle;
  }
  return Pumped::again;
}

void WsSink::take_ready_locked(std::string& body) {
  take_locked();
  taken_.append_to(body);
  taken_.clear();
}

void WsSink::take_locked() {
  stream_.take(taken_);
  frames_ += taken_.message_count();
  const bool left = std::any_of(taken_.topics().begin(), taken_.topics().end(),
                                [](const TopicTake& t) { return t.ended; });
  // A topic left while the connection goes on (deleted): the loop follows (occupancy).
  if (left && stream_.end() == StreamEnd::none && loop_) loop_->push(loop_waiter_, true);
}

// The close frame, to go after everything queued (and gathered) so far: nothing more is
// taken or queued after it. Empty if a close went already or the connection is over.
std::string WsSink::close_frame_locked(uint16_t code, Clock::time_point now) {
  if (close_queued_ || gone_ || closed_) return {};
  close_queued_ = true;
  close_code_ = code;
  ended_at_ = now;
  pending_.clear();
  return ws::close_frame(code);
}

// Appends the close frame after what is queued (written by the caller's next write).
void WsSink::queue_close_locked(uint16_t code, Clock::time_point now) {
  outbox_.append(close_frame_locked(code, now));
}

void WsSink::check_closing_locked(Clock::time_point now) {
  if (ended_locked()) return;
  std::string body;
  if (!stream_.end_if_closing(body)) return;
  outbox_.append(body);
  queue_close_locked(close_code_for(stream_.end()), now);
}

void WsSink::gone_locked(Clock::time_point now, bool reset) {
  if (!gone_) ended_at_ = now;
  gone_ = true;
  reset_ = reset_ || reset;
  outbox_.clear();
  pending_.clear();
  stream_.finish(StreamEnd::client_gone);
}

bool WsSink::tick(Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (ended_locked()) return blocked_locked();
  std::string body;
  if (ping_interval_ > Clock::duration::zero()) {
    if (awaiting_pong_ && now - ping_sent_ >= ping_timeout_) {
      if (blocked_locked()) {
        // Our bytes (the ping among them) wait for a client that reads slowly or not at
        // all: that is the slow-consumer policy's business, not the keepalive's (its
        // stream is dropped or disconnected as any other); TCP itself sees a dead peer.
        ping_sent_ = now;
      } else {
        // No pong in time (as uvicorn: close 1011), then the close grace.
        stream_.finish(StreamEnd::client_gone);
        queue_close_locked(1011, now);
        return !write_locked({}, now);
      }
    }
    if (!awaiting_pong_ && now >= next_ping_) {
      const uint32_t n = ++pings_;
      const char payload[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                               static_cast<char>(n >> 8), static_cast<char>(n)};
      outbox_.append(ws::frame(ws::Opcode::ping, std::string_view(payload, 4)));
      ping_sent_ = now;
      // No timeout (0): no pong is awaited, the next ping follows after the interval.
      awaiting_pong_ = ping_timeout_ > Clock::duration::zero();
      if (!awaiting_pong_) next_ping_ = now + ping_interval_;
    }
  }
  if (heartbeat_ > Clock::duration::zero() && !blocked_locked() && now - last_write_ >= heartbeat_)
    body = notice::heartbeat(Encoding::ws_frame, notice::now());
  return !write_locked(body, now);
}

void WsSink::on_readable(Clock::time_point now) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (fd_ < 0 || closed_ || gone_) return;
    char buf[4096];
    if (inbox_bytes_ >= kInboxLimit) {  // input paused: only a hang-up is looked for
      const ssize_t n = ::recv(fd_, buf, 1, MSG_DONTWAIT | MSG_PEEK);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        peer_closed_ = true;
        gone_locked(now, false);
      }
      return;
    }
    while (inbox_bytes_ < kInboxLimit) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        reader_.feed(std::string_view(buf, static_cast<size_t>(n)), inbound_);
        wake |= handle_inbound_locked(now);  // (counts the inbox for the loop's test)
        continue;  // (after a close or an error the reader ignores the rest)
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      // End of file or an error: the client left. After our close, that ends the
      // handshake; our bytes no longer wait for it either way.
      peer_closed_ = true;
      if (!close_queued_ || blocked_locked()) gone_locked(now, false);
      break;
    }
    if (!gone_) write_locked({}, now);  // pongs, a close
  }
  if (wake && inbox_loop_) inbox_loop_->push(loop_waiter_, true);
}

// Returns true if the inbox was empty and got a message (Python is to be woken).
bool WsSink::handle_inbound_locked(Clock::time_point now) {
  const bool was_empty = inbox_.empty();
  for (auto& in : inbound_) {
    switch (in.kind) {
      case ws::Inbound::Kind::message:
        if (!close_queued_) {
          inbox_bytes_ += in.payload.size() + 1;  // (+1: an empty message counts too)
          inbox_.push_back(std::move(in.payload));
        }
        break;
      case ws::Inbound::Kind::ping:
        if (!close_queued_) outbox_.append(ws::frame(ws::Opcode::pong, in.payload));
        break;
      case ws::Inbound::Kind::pong:
        awaiting_pong_ = false;
        next_ping_ = now + ping_interval_;
        break;
      case ws::Inbound::Kind::close:
        peer_closed_ = true;
        queue_close_locked(in.code, now);  // echoed (RFC 6455 5.5.1), unless ours went
        stream_.finish(StreamEnd::client_gone);
        break;
      case ws::Inbound::Kind::error:
        queue_close_locked(in.code, now);
        stream_.finish(StreamEnd::client_gone);
        break;
    }
  }
  inbound_.clear();
  return was_empty && !inbox_.empty();
}

// Appends `body`, then writes as much as the socket takes. False while bytes remain.
bool WsSink::write_locked(std::string_view body, Clock::time_point now) {
  if (fd_ < 0 || gone_) {
    outbox_.clear();
    return true;
  }
  if (!body.empty()) {
    outbox_.gather(body);
    last_write_ = now;
  }
  if (outbox_.send(fd_) != Outbox::Sent::gone) return !outbox_.blocked();
  gone_locked(now, false);  // the peer is gone: nothing more can be written
  return true;
}

Clock::time_point WsSink::next_deadline(Clock::time_point now, Clock::time_point cap) const {
  std::lock_guard lock(mu_);
  if (ended_locked()) return std::min(ended_at_ + close_grace_, cap);
  auto at = Clock::time_point::max();
  if (ping_interval_ > Clock::duration::zero())
    at = awaiting_pong_ ? ping_sent_ + ping_timeout_ : next_ping_;
  if (heartbeat_ > Clock::duration::zero())
    at = std::min(at, blocked_locked() ? now + heartbeat_ : last_write_ + heartbeat_);
  // Nothing timed: look again now and then (the heap needs an entry per channel).
  return at == Clock::time_point::max() ? now + std::chrono::hours(1) : at;
}

Channel::Over WsSink::over(Clock::time_point now, Clock::time_point cap) const {
  std::lock_guard lock(mu_);
  if (done_) return Over::no;
  if (closed_) return Over::close;
  if (gone_) return reset_ ? Over::reset : Over::close;
  if (!close_queued_) return Over::no;
  // The close handshake is over once our close is out and the client's came (or it left).
  if (!blocked_locked() && peer_closed_) return Over::close;
  if (now < std::min(ended_at_ + close_grace_, cap)) return Over::no;
  return blocked_locked() ? Over::reset : Over::close;
}

void WsSink::retire(bool reset) {
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
    stream_.finish(StreamEnd::client_gone);  // (no-op when it ended before)
    tell = !closed_ && loop_;
  }
  if (tell) loop_->push(loop_waiter_ | Notifier::kClosingBit, true);
}

bool WsSink::done() const {
  std::lock_guard lock(mu_);
  return done_;
}

void WsSink::wake_ready() {
  if (replies_) replies_->push(id_, true);
}

void WsSink::send(std::string frames) {
  {
    std::lock_guard lock(mu_);
    if (ended_locked()) return;
    pending_.append(frames);
  }
  wake_ready();
}

void WsSink::hold() {
  std::lock_guard lock(mu_);
  held_ = true;
}

void WsSink::release() {
  {
    std::lock_guard lock(mu_);
    if (!held_) return;
    held_ = false;
  }
  wake_ready();
}

bool WsSink::subscribe(std::shared_ptr<Subscriber> sub, std::string frames) {
  {
    std::lock_guard lock(mu_);
    if (ended_locked() || stream_.end() != StreamEnd::none) return false;
    pending_.append(frames);
    stream_.add(sub);
  }
  // Added first, redirected next, woken last: no wake-up can be lost in between (one that
  // reached the loop before the redirect only makes Python look, finding nothing).
  sub->redirect(ready_, id_);
  wake_ready();
  return true;
}

bool WsSink::unsubscribe(const Subscriber& sub, std::string frames) {
  bool removed;
  {
    std::lock_guard lock(mu_);
    if (!ended_locked()) take_ready_locked(pending_);  // what came before goes before
    removed = stream_.remove(sub);
    if (!ended_locked()) pending_.append(frames);
  }
  wake_ready();
  return removed;
}

void WsSink::inject(std::string frames) {
  {
    std::lock_guard lock(mu_);
    if (ended_locked()) return;
    take_ready_locked(pending_);
    pending_.append(frames);
  }
  wake_ready();
}

bool WsSink::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (ended_locked()) return false;
    std::string body;
    if (!stream_.end_for_shutdown(body)) return false;
    pending_.append(body);  // taken by the next pump, which then queues close 1001
  }
  wake_ready();
  return true;
}

void WsSink::close_with(uint16_t code) {
  {
    std::lock_guard lock(mu_);
    if (ended_locked()) return;
    held_ = false;
    outbox_.append(pending_);
    pending_.clear();
    stream_.finish(StreamEnd::closed);
    queue_close_locked(code, Clock::now());
  }
  wake_ready();
}

void WsSink::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    stream_.finish(StreamEnd::closed);
    outbox_.clear();
    pending_.clear();
  }
  wake_ready();
}

std::vector<std::string> WsSink::receive() {
  std::vector<std::string> out;
  bool paused;
  {
    std::lock_guard lock(mu_);
    out.swap(inbox_);
    paused = inbox_bytes_ >= kInboxLimit;
    inbox_bytes_ = 0;
  }
  if (paused) wake_ready();  // the Writer polls the socket for input again
  return out;
}

bool WsSink::reading() const {
  std::lock_guard lock(mu_);
  return inbox_bytes_ < kInboxLimit;
}

StreamEnd WsSink::end() const {
  std::lock_guard lock(mu_);
  return closed_ ? StreamEnd::closed : stream_.end();
}

uint64_t WsSink::frames_written() const {
  std::lock_guard lock(mu_);
  return frames_;
}

uint16_t WsSink::close_code() const {
  std::lock_guard lock(mu_);
  return close_code_;
}

}  // namespace fanwire
