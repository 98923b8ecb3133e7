// One subscriber of one topic: a bounded window over the topic's log.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fanwire/message.hpp"
#include "fanwire/notifier.hpp"

namespace fanwire {

class Topic;

// conflate: on a topic with a conflate key, a lagging subscriber skips every message a
// later one of the same key superseded (see Topic); elsewhere it acts as drop_oldest.
enum class Policy : uint8_t { drop_oldest, disconnect, conflate };
// `ended`: its producer ended it (an `end` message, Broker.end); only a Stream's take
// reports it (TopicTake::reason), the subscriber itself is then unsubscribed.
enum class CloseReason : uint8_t {
  none, unsubscribed, slow_consumer, topic_deleted, shutdown, ended
};

const char* to_string(CloseReason reason);

struct SubscribeOptions {
  uint64_t waiter = 0;                 // token handed to the notifier on wake-up
  size_t last_n = 0;                   // replay this many retained messages
  std::optional<std::string> since;    // or resume after this id (wins over last_n)
  Policy policy = Policy::drop_oldest;
  size_t queue_size = 1000;            // clamped to the topic's retention
};

// What one take() returns besides the messages (read under the same lock).
struct TakeResult {
  uint64_t dropped = 0;  // messages dropped just before the ones taken
  uint64_t conflated = 0;  // messages skipped as superseded (conflate policy), likewise
  CloseReason reason = CloseReason::none;
  uint64_t left = 0;     // messages still pending after the take (0 for a slow consumer)
  size_t notices = 0;    // presence notices among the messages taken (Topic::notify)
};

// A subscriber holds no copy of any message: it is a cursor into its topic's retention
// ring whose lag is bounded by `capacity` (its queue size, or its replay if larger). Under
// drop_oldest the cursor is moved forward and the drops counted (lazily, when it is read:
// Topic::settle_locked); under disconnect the publisher closes the subscriber. Presence notices waiting
// (Topic::notify) take places in that window like messages. All state is guarded by the
// topic's mutex; the idle memory cost is this object and two slots in the topic's lists.
class Subscriber {
 public:
  Subscriber(std::shared_ptr<Topic> topic, const SubscribeOptions& options);
  ~Subscriber();
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  const std::string& topic_name() const;
  bool gap() const { return gap_; }
  const std::optional<std::string>& first_available() const { return first_available_; }

  // Parks the subscriber until the next message; false (not parked) if one is ready now
  // or the subscriber is closed, so the caller should take() instead of waiting.
  bool arm();
  // Appends up to `max` ready messages to `out`, stopping before the first one whose key
  // is after `through` (if given: see IdPolicy::visible). A drop is reported with the
  // first message taken after it, or when nothing is left behind.
  TakeResult take(std::vector<MessagePtr>& out, size_t max,
                  std::optional<MessageKey> through = std::nullopt);
  // The topic's bound for a take in id order over several topics (IdPolicy::visible).
  std::optional<MessageKey> visible() const;
  uint64_t pending() const;  // messages and presence notices waiting
  uint64_t dropped();  // applies its pending drops first (Topic::settle_locked)
  CloseReason close_reason() const;
  // From now on, wake-ups go to `notifier` with token `waiter` (a native Writer takes
  // the subscriber over from the event loop).
  void redirect(std::shared_ptr<Notifier> notifier, uint64_t waiter);
  // Skips every message whose id is not after `id` (used when older messages were
  // already delivered from a shared log's history, so none is delivered twice).
  void skip_through(MessageKey key);
  // Unsubscribes (idempotent).
  void close();
  // Whether it receives the topic's presence join/leave notices (Topic::notify).
  void set_join_leave(bool on);
  bool join_leave() const;

  // Subscribers alive in this process, of every broker: for leak checks only.
  static int64_t live_in_process() { return live_.load(std::memory_order_relaxed); }

 private:
  friend class Topic;
  static constexpr size_t npos = static_cast<size_t>(-1);

  std::shared_ptr<Topic> topic_;
  std::shared_ptr<Notifier> notifier_;  // who is woken: the loop's, or a native Writer's
  uint64_t waiter_;
  uint64_t pos_ = 0;       // next position of the topic's ring to read
  uint64_t capacity_ = 0;  // largest allowed lag (end - pos_)
  uint64_t dropped_ = 0;
  uint64_t dropped_unreported_ = 0;
  uint64_t conflated_unreported_ = 0;
  uint64_t cache_end_ = 0;  // cache topics: before it, only the latest of each key is sent
  size_t index_ = npos;         // in Topic::subscribers_
  size_t parked_index_ = npos;  // in Topic::parked_
  Policy policy_;
  CloseReason reason_ = CloseReason::none;
  bool gap_ = false;
  std::optional<MessageKey> floor_;  // see skip_through
  std::optional<std::string> first_available_;
  // Presence notices waiting, each with the ring position it goes before (it was
  // published when the ring ended there), in that order; take() puts them in place.
  std::vector<std::pair<uint64_t, MessagePtr>> notices_;
  bool join_leave_ = false;
  static inline std::atomic<int64_t> live_{0};
};

}  // namespace fanwire
