// The threads that write native connections (SSE Sinks, WebSocket WsSinks) to their
// sockets.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "fanwire/lane.hpp"
#include "fanwire/notifier.hpp"
#include "fanwire/sink.hpp"
#include "fanwire/wssink.hpp"

namespace fanwire {

// One Lane (an epoll thread) per writer thread; a connection stays on the lane it was
// attached to, the one with the fewest connections then. Why several: a publish to N
// clients costs N sends (TCP over loopback: the kernel's send and the receiver's wake-up,
// ~8-13 us each on the 2-core box), so the last of 1,000 SSE clients got a message one
// whole pass (~10 ms) after the first; lanes on other cores share that pass, where cores
// are to spare (see auto_threads). Each lane
// keeps its connections' order, so nothing a client sees depends on the lane count.
class Writer {
 public:
  // `threads` 0: auto_threads(). `inbox` (null: `loop`) is told of WebSocket client
  // messages: the loop answers those at once, while `loop`'s wake-ups of subscribers are
  // rate-limited (Python's Waker). Through one notifier, every publish over a native
  // WebSocket waited up to that limit (5 ms) for its ack: one WebSocket with 256
  // publishes in flight was held at 21,500 msg/s with the server's loop 44% busy.
  explicit Writer(std::shared_ptr<Notifier> loop, size_t threads = 0,
                  std::shared_ptr<Notifier> inbox = nullptr);

  static constexpr size_t kMaxAutoThreads = 4;
  // One per CPU but one (at least one, at most kMaxAutoThreads).
  static size_t auto_threads();

  std::shared_ptr<Sink> attach(std::vector<std::shared_ptr<Subscriber>> subs,
                               Sink::Options options);
  std::shared_ptr<WsSink> attach_ws(WsSink::Options options);
  size_t sink_count() const;
  size_t thread_count() const { return lanes_.size(); }
  // See Lane::limit_grace: every lane.
  void limit_grace(double seconds);

 private:
  Lane& least_loaded();

  std::vector<std::unique_ptr<Lane>> lanes_;
};

}  // namespace fanwire
