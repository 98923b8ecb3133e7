#include "fanwire/sink.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>

namespace fanwire {
namespace {

std::string now_ts() {
  using namespace std::chrono;
  const double ts = duration<double>(system_clock::now().time_since_epoch()).count();
  char buf[48];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, ts, std::chars_format::fixed, 6);
  return ec == std::errc{} ? std::string(buf, end) : std::string("0");
}

// SSE control frames (PROTOCOL.md). Topic names are validated, so need no escaping.
void frame(std::string& out, std::string_view event, std::string_view json) {
  out.append("event: ").append(event).append("\ndata: ").append(json).append("\n\n");
}

std::string topic_json(std::string_view topic, std::string_view extra = {}) {
  std::string json = "{\"topic\":\"";
  json.append(topic).append("\"").append(extra).append("}");
  return json;
}

// The topic a producer ended (Broker.end publishes `event: end`, with no id line: see
// Message::make), or empty for any other message.
std::string_view ended_topic(const Message& message) {
  constexpr std::string_view kEnd = "event: end\ndata: {\"topic\":\"";
  const std::string_view sse = message.sse();
  if (!sse.starts_with(kEnd)) return {};
  const std::string_view rest = sse.substr(kEnd.size());
  return rest.substr(0, rest.find('"'));
}

}  // namespace

const char* to_string(SinkEnd end) {
  switch (end) {
    case SinkEnd::none: return "";
    case SinkEnd::no_topics: return "no_topics";
    case SinkEnd::shutdown: return "shutdown";
    case SinkEnd::slow_consumer: return "slow_consumer";
    case SinkEnd::client_gone: return "client_gone";
    case SinkEnd::closed: return "closed";
  }
  return "";
}

Sink::Sink(uint64_t id, std::vector<std::shared_ptr<Subscriber>> subs, Options options)
    : id_(id), stream_(Encoding::sse, std::move(subs)), fd_(options.fd),
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
  if (end_ != SinkEnd::none) return blocked_locked() ? Pumped::blocked : Pumped::idle;
  // Bounded rounds keep one very hot stream from starving the others.
  for (int round = 0; round < 8; ++round) {
    std::string body;
    const bool more = fill_locked(body);
    if (!body.empty() && !write_locked(body, now)) return Pumped::blocked;
    if (end_ != SinkEnd::none || !more) return blocked_locked() ? Pumped::blocked : Pumped::idle;
  }
  return Pumped::again;
}

bool Sink::tick(Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (end_ == SinkEnd::none && !blocked_locked() && now - last_write_ >= heartbeat_) {
    std::string body;
    frame(body, "heartbeat", "{\"ts\":" + now_ts() + "}");
    return !write_locked(body, now);
  }
  return blocked_locked();
}

// Takes the injected bytes, then every ready message of every topic (in id order, with
// the notices of topics that ended), into `body`; then parks the subscribers. Returns
// true if one of them had more ready meanwhile (the caller loops).
bool Sink::fill_locked(std::string& body) {
  body.append(injected_);  // taken before anything that became ready since (inject)
  injected_.clear();
  take_ready_locked(body);
  if (end_ == SinkEnd::none && stream_.empty()) finish_locked(SinkEnd::no_topics);
  if (end_ != SinkEnd::none) return false;
  return !stream_.arm();
}

void Sink::take_ready_locked(std::string& body) {
  stream_.take(taken_);
  taken_.append_to(body);
  frames_ += taken_.message_count();
  const auto& topics = taken_.topics();
  size_t removed = 0;  // from the stream so far: its indexes shift
  for (size_t i = 0; i < topics.size() && end_ == SinkEnd::none; ++i)
    if (topics[i].ended) end_topic_locked(i - removed, topics[i].reason, body, removed);
  // A topic whose end was just written leaves the stream (fill_locked then ends the
  // stream once no topic is left, as after a deletion).
  for (const auto& piece : taken_.pieces()) {
    const std::string_view topic = piece.message ? ended_topic(*piece.message) : "";
    for (size_t i = 0; !topic.empty() && i < stream_.size(); ++i) {
      if (stream_.at(i)->topic_name() != topic) continue;
      stream_.at(i)->close();
      stream_.remove_at(i);
      break;
    }
  }
  taken_.clear();
}

void Sink::end_topic_locked(size_t index, CloseReason reason, std::string& body,
                            size_t& removed) {
  Subscriber& sub = *stream_.at(index);
  if (reason == CloseReason::slow_consumer) {
    frame(body, "error", "{\"code\":\"SLOW_CONSUMER\",\"topic\":\"" + sub.topic_name() + "\"}");
    finish_locked(SinkEnd::slow_consumer);
    return;
  }
  if (reason == CloseReason::shutdown) {
    frame(body, "shutdown", "{\"ts\":" + now_ts() + "}");
    finish_locked(SinkEnd::shutdown);
    return;
  }
  if (reason == CloseReason::topic_deleted) frame(body, "topic_deleted", topic_json(sub.topic_name()));
  stream_.remove_at(index);
  ++removed;
}

// While the socket is full nothing is taken, but a disconnect (slow consumer) or a
// shutdown must still end the stream: its notice is queued behind the stuck bytes.
void Sink::check_closing_locked(Clock::time_point now) {
  if (end_ != SinkEnd::none) return;
  for (size_t i = 0; i < stream_.size(); ++i) {
    const auto& sub = stream_.at(i);
    const CloseReason reason = sub->close_reason();
    if (reason != CloseReason::slow_consumer && reason != CloseReason::shutdown) continue;
    std::string body;
    if (reason == CloseReason::slow_consumer) {
      frame(body, "error", "{\"code\":\"SLOW_CONSUMER\",\"topic\":\"" + sub->topic_name() + "\"}");
    } else {
      frame(body, "shutdown", "{\"ts\":" + now_ts() + "}");
    }
    write_locked(body, now);
    finish_locked(reason == CloseReason::shutdown ? SinkEnd::shutdown : SinkEnd::slow_consumer);
    return;
  }
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
      finish_locked(SinkEnd::client_gone);
    }
  }
  out_.clear();
  out_offset_ = 0;
  return true;
}

void Sink::finish_locked(SinkEnd end) {
  if (end_ != SinkEnd::none) return;
  end_ = end;
  stream_.close_all();
  if (end != SinkEnd::closed && loop_) loop_->push(loop_waiter_ | Notifier::kClosingBit, true);
}

void Sink::close() {
  {
    std::lock_guard lock(mu_);
    finish_locked(SinkEnd::closed);
    end_ = SinkEnd::closed;  // whatever ended it before: Python is done with it
    out_.clear();
    out_offset_ = 0;
  }
  if (ready_) ready_->push(id_, true);
}

void Sink::inject(std::string bytes) {
  {
    std::lock_guard lock(mu_);
    if (end_ != SinkEnd::none) return;
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
  return end_;
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
