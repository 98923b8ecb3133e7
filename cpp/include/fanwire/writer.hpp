// The thread that writes native SSE streams (Sinks) to their sockets.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fanwire/notifier.hpp"
#include "fanwire/sink.hpp"

namespace fanwire {

// One epoll thread for every native stream: woken through its own Notifier when a
// subscriber of a Sink has messages (token = sink id), and by EPOLLOUT when a blocked
// socket drains. It never holds the GIL and never calls into Python.
class Writer {
 public:
  explicit Writer(std::shared_ptr<Notifier> loop);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Takes the subscribers over from the event loop and starts writing to `fd` (owned).
  std::shared_ptr<Sink> attach(std::vector<std::shared_ptr<Subscriber>> subs,
                               Sink::Options options);
  size_t sink_count() const;

 private:
  void run();
  void pump(uint64_t id, Clock::time_point now);
  void watch(Sink& sink, bool blocked);
  void sweep(Clock::time_point now);
  void retire_if_over(Sink& sink, bool blocked);

  std::shared_ptr<Notifier> loop_;
  std::shared_ptr<Notifier> ready_ = std::make_shared<Notifier>();
  int epoll_fd_ = -1;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Sink>> sinks_;
  std::unordered_map<uint64_t, bool> polled_;  // writer thread only: EPOLLOUT armed
  uint64_t next_id_ = 1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace fanwire
