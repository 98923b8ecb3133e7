// One thread that writes native connections (SSE Sinks, WebSocket WsSinks) to their
// sockets: a Writer has one Lane per thread (writer.hpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <queue>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fanwire/notifier.hpp"
#include "fanwire/sink.hpp"
#include "fanwire/wssink.hpp"

namespace fanwire {

// One epoll thread for its share of the native connections: woken through its own
// Notifier when a subscriber of a Sink has messages (token = sink id), by EPOLLOUT when a
// blocked socket drains, and by EPOLLIN/EPOLLRDHUP when a client leaves. Heartbeats and close graces
// come from a deadline heap (one live entry per sink), so an idle stream costs nothing
// between its heartbeats. It never holds the GIL and never calls into Python.
class Lane {
 public:
  Lane(std::shared_ptr<Notifier> loop, std::shared_ptr<Notifier> inbox);
  ~Lane();
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  // Takes the subscribers over from the event loop and starts writing to `fd` (owned).
  std::shared_ptr<Sink> attach(std::vector<std::shared_ptr<Subscriber>> subs,
                               Sink::Options options);
  // Takes a WebSocket connection over after its handshake (fd owned): see WsSink.
  std::shared_ptr<WsSink> attach_ws(WsSink::Options options);
  size_t sink_count() const;
  // No ended stream may wait longer than `seconds` from now for its bytes to leave (the
  // server's shutdown grace): past it, the Lane resets it.
  void limit_grace(double seconds);

 private:
  void run();
  void serve(uint64_t token, Clock::time_point now);  // one drained wake-up
  void pump(uint64_t id, Clock::time_point now);
  void watch(Channel& sink, bool blocked);
  void settle(Channel& sink, Clock::time_point now);
  void schedule(uint64_t id, Clock::time_point at);
  void fire_timers(Clock::time_point now);
  int wait_ms(Clock::time_point now) const;
  void add(std::shared_ptr<Channel> channel);
  std::shared_ptr<Channel> find(uint64_t id) const;
  Clock::time_point cap() const;

  std::shared_ptr<Notifier> loop_;
  std::shared_ptr<Notifier> inbox_;  // WebSocket client messages (see Writer)
  std::shared_ptr<Notifier> ready_ = std::make_shared<Notifier>();  // subscribers' wake-ups
  // What Python asked of a connection (frames queued, close): served first (see run).
  std::shared_ptr<Notifier> replies_ = std::make_shared<Notifier>();
  int epoll_fd_ = -1;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Channel>> sinks_;
  // This thread only: EPOLLOUT armed or input paused; each sink's live timer and the heap of timers
  // (entries whose time is not the sink's live one are stale and skipped).
  std::unordered_map<uint64_t, uint32_t> polled_;  // epoll events, when not the default
  std::unordered_map<uint64_t, Clock::time_point> timer_at_;
  using Timer = std::pair<Clock::time_point, uint64_t>;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::atomic<Clock::rep> cap_{Clock::time_point::max().time_since_epoch().count()};
  uint64_t next_id_ = 1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace fanwire
