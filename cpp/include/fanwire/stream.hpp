// The messages of one connection's topics, merged in id order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fanwire/subscriber.hpp"

namespace fanwire {

// How a connection's bytes are encoded: SSE frames, WebSocket texts, or whole WebSocket
// frames (written to the socket as they are).
enum class Encoding : uint8_t { sse, ws_text, ws_frame };

// What one take did to one topic of the stream.
struct TopicTake {
  uint64_t dropped = 0;  // messages dropped before this take's first message of the topic
  uint64_t conflated = 0;  // messages skipped as superseded (conflate policy), likewise
  size_t messages = 0;   // messages of the topic in this take
  CloseReason reason = CloseReason::none;
  // Closed with nothing of it left to deliver (a slow consumer is cut off at once): its
  // end notice is due right after this take.
  bool ended = false;
};

// What one Stream::take delivered, in delivery order. The caller owns it and reuses it
// from take to take (its buffers keep their capacity), so a connection's Stream holds
// nothing but its subscribers: one scratch per thread serves every idle connection.
class Taken {
 public:
  struct Piece {
    const Message* message = nullptr;  // null: the drop notice notices_[notice]
    uint32_t notice = 0;
  };

  const std::vector<Piece>& pieces() const { return pieces_; }
  // By subscriber, in the order of Stream::at() at the time of the take.
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
  void merge(const std::vector<std::shared_ptr<Subscriber>>& subs);
  void add_piece(const std::vector<std::shared_ptr<Subscriber>>& subs, uint32_t run,
                 const Message* message);
  void add_notice(const std::vector<std::shared_ptr<Subscriber>>& subs, uint32_t run);

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
// Not thread-safe: one owner (the event loop, or a Sink under its lock).
class Stream {
 public:
  explicit Stream(Encoding encoding, std::vector<std::shared_ptr<Subscriber>> subs = {});

  Encoding encoding() const { return encoding_; }
  size_t size() const { return subs_.size(); }
  bool empty() const { return subs_.empty(); }
  const std::shared_ptr<Subscriber>& at(size_t index) const { return subs_[index]; }
  void add(std::shared_ptr<Subscriber> sub);
  // Forgets `sub` (it stays open); false if it is not in the stream.
  bool remove(const Subscriber& sub);
  void remove_at(size_t index);
  // Closes every subscriber and forgets them.
  void close_all();
  // Parks every subscriber until its next message; false if one has something ready now.
  bool arm();

  // Takes everything ready into `out` (cleared first; see the class comment).
  void take(Taken& out) const;

 private:
  Encoding encoding_;
  std::vector<std::shared_ptr<Subscriber>> subs_;
};

}  // namespace fanwire
