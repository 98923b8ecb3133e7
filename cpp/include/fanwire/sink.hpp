// One SSE stream whose frames the core writes straight to the client's socket.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fanwire/channel.hpp"
#include "fanwire/notifier.hpp"
#include "fanwire/outbox.hpp"
#include "fanwire/stream.hpp"
#include "fanwire/subscriber.hpp"

namespace fanwire {

// Why a native stream ended (none while it runs): its Stream's end, or `closed` once
// Python closed the Sink.
using SinkEnd = StreamEnd;

// Once the HTTP response head is out (written by the server, in Python), a Sink owns the
// connection: the server let go of it, so the Sink's descriptor is the only one. It
// writes every ready frame itself, one chunk of HTTP/1.1 chunked encoding per wake-up:
// what its Stream takes (topics merged in id order, with every notice and the
// end-of-stream rules), and heartbeats. It reads the socket too, only to see the client
// leave. It only moves bytes and reports written, full (kept here) or gone. When the
// stream ends it finishes the response (the last chunk after a clean end: no topic left,
// shutdown), closes the socket once its bytes are out, or resets it when they are still
// stuck after `close_grace`; then (retire()) Python is told, once. Driven by one Writer
// thread; close() may come from any thread. The socket is non-blocking: a full socket
// leaves the rest buffered here until it drains, and meanwhile the subscriber's policy
// deals with the lag, exactly as for a slow Python consumer.
class Sink : public Channel {
 public:
  struct Options {
    int fd = -1;                    // owned: closed by the Sink
    std::string preamble;           // SSE bytes to send first (e.g. resume gap notices)
    double heartbeat_seconds = 15;  // heartbeat frame after this long without a write
    double close_grace_seconds = 5; // an ended stream's bytes may take this long to leave
    std::shared_ptr<Notifier> loop; // told (waiter | closing bit) when the stream ends
    uint64_t loop_waiter = 0;
    // The Writer's notifier for what Python asks (close(), inject()): served before the
    // subscribers' wake-ups (see Lane::run).
    std::shared_ptr<Notifier> ready;
  };

  Sink(uint64_t id, std::vector<std::shared_ptr<Subscriber>> subs, Options options);
  ~Sink();
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  uint64_t id() const override { return id_; }
  int fd() const override { return fd_; }

  // Writer thread (see Channel): take what is ready and write it.
  Pumped pump(Clock::time_point now) override;
  // Writer thread: a heartbeat if idle for too long; true while bytes wait.
  bool tick(Clock::time_point now) override;
  // Writer thread: the socket is readable (or hung up): reads and discards what the
  // client sent; end of file or an error ends the stream (client_gone).
  void on_readable(Clock::time_point now) override;
  // Writer thread: when tick() (or a reset, see over()) is due next. `cap`: no ended
  // stream waits past it (the shutdown grace).
  Clock::time_point next_deadline(Clock::time_point now, Clock::time_point cap) const override;
  // Writer thread: whether the sink is done: closed by Python, ended with its bytes out
  // (close), or ended with bytes still stuck past its close grace or `cap` (reset).
  Over over(Clock::time_point now, Clock::time_point cap) const override;
  // Writer thread: closes the socket (reset: with SO_LINGER 0, dropping what the kernel
  // still holds) and tells Python once, unless Python closed the sink itself.
  void retire(bool reset) override;
  // True once the socket is closed (retire()).
  bool done() const override;

  // Any thread: queue `bytes` (SSE frames) behind what the subscribers hold now, e.g. a
  // gap notice from a shared log's reader; the Writer is woken to send it.
  void inject(std::string bytes);
  // Any thread: stop (Python gave up on it, or the server exits). The Writer then
  // closes the socket.
  void close();
  SinkEnd end() const;
  // True once nothing is left to write (the server may then finish the response).
  bool flushed() const;
  uint64_t frames_written() const;

 private:
  bool fill_locked();
  void check_closing_locked(Clock::time_point now);
  void take_locked();
  void take_ready_locked(std::string& body);
  bool write_locked(std::string_view body, Clock::time_point now);
  void gather_chunk_head(size_t size);
  bool send_locked(Clock::time_point now);
  void on_end_locked(Clock::time_point now);
  bool ended_locked() const { return closed_ || stream_.end() != StreamEnd::none; }
  bool blocked_locked() const { return outbox_.blocked(); }

  const uint64_t id_;
  mutable std::mutex mu_;
  Stream stream_;
  Taken taken_;             // the last take, reused
  int fd_;
  Outbox outbox_;           // bytes not yet accepted by the socket
  char chunk_head_[24];     // the chunk size line of the write under way (gathered)
  std::string injected_;    // see inject()
  Clock::time_point last_write_;
  Clock::duration heartbeat_;
  Clock::duration close_grace_;
  Clock::time_point ended_at_{};
  std::shared_ptr<Notifier> loop_;
  uint64_t loop_waiter_;
  std::shared_ptr<Notifier> ready_;
  uint64_t frames_ = 0;
  bool closed_ = false;  // Python closed it (whatever ended it before)
  bool ended_seen_ = false;  // on_end_locked ran
  bool last_chunk_due_ = false;
  bool done_ = false;        // the socket is closed
};

}  // namespace fanwire
