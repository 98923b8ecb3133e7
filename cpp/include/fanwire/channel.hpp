// What the Writer thread drives: one connection the core owns (an SSE Sink, a WebSocket
// WsSink). The Writer only schedules; each channel moves its own bytes.
#pragma once

#include <chrono>
#include <cstdint>

namespace fanwire {

using Clock = std::chrono::steady_clock;

class Channel {
 public:
  virtual ~Channel() = default;

  virtual uint64_t id() const = 0;
  virtual int fd() const = 0;

  enum class Pumped : uint8_t { idle, blocked, again };
  // Writer thread: take what is ready and write it. `blocked`: bytes wait for the socket
  // to drain (the writer polls it for EPOLLOUT); `again`: more is ready after a bounded
  // number of rounds (the writer comes back to this channel after the others).
  virtual Pumped pump(Clock::time_point now) = 0;
  // Writer thread: its timers (heartbeat, ping) are due; true while bytes wait.
  virtual bool tick(Clock::time_point now) = 0;
  // Writer thread: the socket is readable (or hung up).
  virtual void on_readable(Clock::time_point now) = 0;
  // Writer thread: whether to poll the socket for input (false: only for a hang-up, while
  // what the client sent waits for Python, so a flooding client meets TCP backpressure).
  virtual bool reading() const { return true; }
  // Writer thread: when tick() (or a reset, see over()) is due next. `cap`: no ended
  // connection waits past it (the shutdown grace).
  virtual Clock::time_point next_deadline(Clock::time_point now, Clock::time_point cap) const = 0;
  enum class Over : uint8_t { no, close, reset };
  // Writer thread: whether the channel is done: closed by Python, ended with its bytes out
  // (close), or ended with bytes still stuck past its close grace or `cap` (reset).
  virtual Over over(Clock::time_point now, Clock::time_point cap) const = 0;
  // Writer thread: closes the socket (reset: with SO_LINGER 0, dropping what the kernel
  // still holds) and tells Python once, unless Python closed the channel itself.
  virtual void retire(bool reset) = 0;
  // True once the socket is closed (retire()).
  virtual bool done() const = 0;
};

}  // namespace fanwire
