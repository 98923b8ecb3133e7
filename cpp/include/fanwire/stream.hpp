// The messages of one connection's topics, merged in id order.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fanwire/notices.hpp"
#include "fanwire/subscriber.hpp"

namespace fanwire {

// Why a connection's stream ended (none while it runs): no topic left (all deleted, or
// closed by their owner), the server's shutdown, a slow consumer under `disconnect`, the
// client gone (a writer saw it), or closed by its owner. A topic that ends on its own
// (deleted, or ended by its producer in an SSE stream; the same for any later per-topic
// end) only leaves the stream; see Stream::take.
enum class StreamEnd : uint8_t { none, no_topics, shutdown, slow_consumer, client_gone, closed };
const char* to_string(StreamEnd end);

// What one take did to one topic of the stream.
struct TopicTake {
  std::string topic;     // set when dropped or closed (what a caller's note needs)
  uint64_t dropped = 0;  // messages dropped before this take's first message of the topic
  uint64_t conflated = 0;  // messages skipped as superseded (conflate policy), likewise
  size_t messages = 0;   // messages of the topic in this take
  CloseReason reason = CloseReason::none;
  // Closed with nothing of it left to deliver (a slow consumer is cut off at once): its
  // end notice is due right after this take.
  bool ended = false;
};

// What one Stream::take delivered, in delivery order: the messages, their drop notices,
// and after them the end notices (a deleted topic, the shutdown, the slow consumer). The caller owns it and reuses it
// from take to take (its buffers keep their capacity), so a connection's Stream holds
// nothing but its subscribers: one scratch per thread serves every idle connection.
class Taken {
 public:
  struct Piece {
    const Message* message = nullptr;  // null: the notice notices_[notice]
    uint32_t notice = 0;
  };

  const std::vector<Piece>& pieces() const { return pieces_; }
  // By subscriber, in the order of Stream::at() at the start of the take (the take may
  // remove ended topics from the stream afterwards).
  const std::vector<TopicTake>& topics() const { return topics_; }
  size_t message_count() const { return messages_; }
  uint64_t dropped_count() const { return dropped_; }
  std::string_view bytes(const Piece& piece) const;
  size_t byte_size() const;
  void append_to(std::string& out) const;
  // Drops the references to the messages (they stay alive in their rings, not here).
  void clear();

 private:
  friend class Stream;
  void merge();
  void add_piece(uint32_t run, const Message* message);
  void add_notice(uint32_t run);
  void add_notice(std::string notice);

  Encoding encoding_ = Encoding::sse;
  std::vector<std::vector<MessagePtr>> runs_;  // per subscriber
  std::vector<TopicTake> topics_;
  std::vector<Piece> pieces_;
  std::vector<std::string> notices_;
  std::vector<size_t> heads_;   // merge: next position in each run
  std::vector<std::pair<MessageKey, uint32_t>> heap_;  // merge: (next key, run) left
  size_t used_ = 0;  // runs_ filled by the last take
  size_t messages_ = 0;
  uint64_t dropped_ = 0;
};

// One connection's subscribers (one per topic), taken together: a take merges what each
// has ready in id order, so a client that resumes from the last id it saw gets every
// topic's messages after it, none twice (PROTOCOL.md). Each topic's messages are in id
// order already, so this is a k-way merge by key. The take stops at IdPolicy::visible(),
// so no later take can bring a smaller id (external ids: as long as they are published
// in key order across topics, as the Redis reader does).
// A drop notice goes right before its topic's first message of the take.
//
// The end-of-stream rules live here too, so that every writer only moves bytes: a topic
// closed with nothing of it left to deliver leaves the stream (a deleted one after its
// `topic_deleted` notice); in an SSE stream, a topic its producer ended (an `end`
// message, Broker.end) leaves right after that message, which is its last (a WebSocket
// client unsubscribes itself); a shutdown or a slow consumer ends the whole stream, its
// one notice after the messages of the take, every subscriber released; with
// `end_when_empty` (SSE) the stream ends once no topic is left. Once ended, take() gives
// nothing more and end() says why.
// Not thread-safe: one owner (the event loop, or a Sink under its lock).
class Stream {
 public:
  explicit Stream(Encoding encoding, std::vector<std::shared_ptr<Subscriber>> subs = {},
                  bool end_when_empty = false);

  Encoding encoding() const { return encoding_; }
  size_t size() const { return subs_.size(); }
  bool empty() const { return subs_.empty(); }
  const std::shared_ptr<Subscriber>& at(size_t index) const { return subs_[index]; }
  // `held`: its messages wait (e.g. for a history on its way from a shared log) until
  // release(); it is part of the stream meanwhile (it keeps an SSE stream from ending).
  void add(std::shared_ptr<Subscriber> sub, bool held = false);
  void release(const Subscriber& sub);
  // `sub`'s `end` message reached the client another way (in a history read from a shared
  // log): the next take lets its topic go as if it took that message (SSE only).
  void mark_ended(const Subscriber& sub);
  // Forgets `sub` (it stays open); false if it is not in the stream.
  bool remove(const Subscriber& sub);
  void remove_at(size_t index);
  // Parks every subscriber until its next message; false if one has something ready now.
  bool arm();

  // Takes everything ready into `out` (cleared first; see the class comment).
  void take(Taken& out);
  // For a client that takes nothing now (its socket stays full): if a subscriber was
  // closed as a slow consumer or by the shutdown, ends the stream and appends its notice
  // to `out` (queued behind the stuck bytes). True if it ended.
  bool end_if_closing(std::string& out);
  // The server shuts down and no subscriber is left for the broker's shutdown to close
  // (a WebSocket that never subscribed, or unsubscribed from everything): ends the
  // stream, its shutdown notice appended to `out`. False if it ended already, or if a
  // subscriber will carry the shutdown (then take() ends it).
  bool end_for_shutdown(std::string& out);
  // Ends the stream (if it runs) and closes every subscriber: a writer reports the
  // client gone, or the owner closes it.
  void finish(StreamEnd end);
  StreamEnd end() const { return end_; }

 private:
  bool end_topics(Taken& out);
  bool end_topic(Taken& out, const TopicTake& topic, size_t index);
  void take_topic(size_t index, std::optional<MessageKey> through, Taken& out);

  Encoding encoding_;
  std::vector<std::shared_ptr<Subscriber>> subs_;
  std::vector<uint8_t> held_;  // by subscriber: see add()
  std::vector<uint8_t> ended_;  // by subscriber: see mark_ended()
  bool end_when_empty_;
  StreamEnd end_ = StreamEnd::none;
};

}  // namespace fanwire
