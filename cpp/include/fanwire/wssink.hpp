// One WebSocket connection the core owns after its handshake (the sibling of Sink, SSE).
#pragma once

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
#include "fanwire/wsframe.hpp"

namespace fanwire {

// Once the server (uvicorn, in Python) completed the handshake and let go of the socket,
// a WsSink owns the connection: the Writer thread writes every frame, Python none, so
// frames never interleave and Python costs nothing per wake-up and per idle client.
//
// One ordered output: the event frames its Stream takes (every topic merged in id order,
// with every notice and the end-of-stream rules), and the frames Python hands it (acks,
// replies, errors, `connected`), queued in the order Python gave them. Subscribing queues
// the ack and adds the subscriber under one lock (so the ack precedes every event of it);
// unsubscribing takes what is ready, removes the subscriber and queues the ack under one
// lock (so no event of it follows the ack).
//
// The read side: client frames are parsed here (ws::Reader); a ping is answered with a
// pong at once, complete messages wait in an inbox Python drains when the loop is woken
// (one wake-up for however many arrived). Keepalive: a protocol ping every
// `ping_interval` seconds, and a client whose pong does not come within `ping_timeout`
// is closed 1011 (not while our bytes wait for it: a slow reader is the policy's); an `info heartbeat` only when the client asked for one (`heartbeat_seconds`).
//
// The end: a close frame with the code the engine decides (1001 shutdown, 1008 slow
// consumer, as ws.py's CLOSE_CODES), a client's close echoed, a protocol error closed
// with its code; then the socket is closed once the close handshake is over, or reset
// when its bytes are still stuck `close_grace` later (or past the Writer's shutdown cap).
class WsSink : public Channel {
 public:
  struct Options {
    int fd = -1;  // owned: closed by the sink
    size_t max_message = 1 << 20;
    double ping_interval = 20;  // 0: no pings
    double ping_timeout = 20;   // 0: no limit
    double heartbeat_seconds = 0;  // 0: no `info heartbeat` (the client did not ask)
    double close_grace_seconds = 5;
    std::shared_ptr<Notifier> loop;   // told (waiter) of a topic left, (| closing) at the end
    std::shared_ptr<Notifier> inbox;  // told (waiter) of client messages (Writer: `loop` if none)
    uint64_t loop_waiter = 0;
    std::shared_ptr<Notifier> ready;    // the Writer's, for its subscribers' wake-ups
    std::shared_ptr<Notifier> replies;  // the Writer's, for the frames Python queues (acks)
  };

  WsSink(uint64_t id, Options options);
  ~WsSink() override;
  WsSink(const WsSink&) = delete;
  WsSink& operator=(const WsSink&) = delete;

  uint64_t id() const override { return id_; }
  int fd() const override { return fd_; }
  Pumped pump(Clock::time_point now) override;
  bool tick(Clock::time_point now) override;
  void on_readable(Clock::time_point now) override;
  bool reading() const override;
  Clock::time_point next_deadline(Clock::time_point now, Clock::time_point cap) const override;
  Over over(Clock::time_point now, Clock::time_point cap) const override;
  void retire(bool reset) override;
  bool done() const override;

  // Any thread (Python): queue whole frames behind everything queued so far.
  void send(std::string frames);
  // Any thread (Python): take no event until release(). Python holds the stream while
  // it answers a client message, so that a publish's ack goes out before the event it
  // published (which reaches this stream as soon as the core has it), as on the path
  // where Python writes under its send lock.
  void hold();
  void release();
  // Queue `frames` (the ack, then the resume's notices), then add `sub`: atomically.
  // False once the connection ended (the caller closes `sub`).
  bool subscribe(std::shared_ptr<Subscriber> sub, std::string frames);
  // Take what is ready, remove `sub`, queue `frames` (the ack): atomically.
  bool unsubscribe(const Subscriber& sub, std::string frames);
  // A notice (presence) after what the subscribers hold now, as Sink::inject.
  void inject(std::string frames);
  // The server shuts down and no subscriber will carry the shutdown (none left): queue
  // the `info shutdown` notice and close 1001. False if a subscriber will, or it ended.
  bool shutdown();
  // Python ends it: close frame `code` behind what is queued.
  void close_with(uint16_t code);
  // Python is done with it: nothing more is written, the Writer closes the socket.
  void close();
  // The client messages received so far (each whole, text or binary), oldest first.
  std::vector<std::string> receive();
  StreamEnd end() const;
  uint64_t frames_written() const;
  // The close code sent or echoed (0 while open).
  uint16_t close_code() const;

 private:
  bool ended_locked() const { return closed_ || gone_ || close_queued_; }
  bool blocked_locked() const { return outbox_.blocked(); }
  void take_locked();
  void take_ready_locked(std::string& body);
  std::string close_frame_locked(uint16_t code, Clock::time_point now);
  void queue_close_locked(uint16_t code, Clock::time_point now);
  void check_closing_locked(Clock::time_point now);
  void gone_locked(Clock::time_point now, bool reset);
  bool handle_inbound_locked(Clock::time_point now);
  bool write_locked(std::string_view body, Clock::time_point now);
  void wake_ready();  // the Writer, for something Python asked (Options::replies)

  const uint64_t id_;
  mutable std::mutex mu_;
  Stream stream_;
  Taken taken_;
  ws::Reader reader_;
  std::vector<ws::Inbound> inbound_;  // parsed, not yet handled (scratch)
  std::vector<std::string> inbox_;    // messages for Python (receive())
  size_t inbox_bytes_ = 0;            // reading pauses past kInboxLimit (see reading())
  int fd_;
  std::string pending_;  // frames from Python not yet taken by the writer
  Outbox outbox_;        // bytes not yet accepted by the socket
  Clock::time_point last_write_;
  Clock::duration heartbeat_;      // zero: none
  Clock::duration ping_interval_;  // zero: none
  Clock::duration ping_timeout_;
  Clock::duration close_grace_;
  Clock::time_point next_ping_;
  Clock::time_point ping_sent_{};
  Clock::time_point ended_at_{};
  std::shared_ptr<Notifier> loop_;
  std::shared_ptr<Notifier> inbox_loop_;  // Options::inbox
  uint64_t loop_waiter_;
  std::shared_ptr<Notifier> ready_;
  std::shared_ptr<Notifier> replies_;
  uint64_t frames_ = 0;
  uint32_t pings_ = 0;
  uint16_t close_code_ = 0;
  bool awaiting_pong_ = false;
  bool held_ = false;          // see hold()
  bool closed_ = false;        // Python closed it
  bool gone_ = false;          // the client left (or was reset): nothing more is written
  bool reset_ = false;         // gone_ and to be reset, not closed
  bool close_queued_ = false;  // our close frame is queued (nothing may follow it)
  bool peer_closed_ = false;   // the client's close arrived (or its end of file)
  bool done_ = false;          // the socket is closed
};

}  // namespace fanwire
