// A topic: its retention ring and its subscribers.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fanwire/conflate.hpp"
#include "fanwire/message.hpp"
#include "fanwire/notifier.hpp"
#include "fanwire/ring.hpp"
#include "fanwire/subscriber.hpp"

namespace fanwire {

// Server-wide counters shared by every topic (for /stats and /metrics).
struct Counters {
  std::atomic<uint64_t> published{0};
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> dropped{0};
  std::atomic<uint64_t> conflated{0};  // skipped as superseded (conflate policy)
};

// How a resume id is judged: the broker's own ids carry its epoch; external ids (Redis
// stream ids) are trusted as long as they parse. Shared by the broker and its topics.
struct IdPolicy {
  bool external = false;
  uint64_t epoch = 0;
  std::atomic<uint64_t> last_seq{0};  // newest own id issued (its seq)

  // The newest key up to which every topic's messages are in their rings already, so a
  // take over several topics may deliver up to it and stay in id order from one take to
  // the next (see Stream). Own ids are issued under the topic's lock, in the same
  // critical section as the append: any id issued before this load is visible to whoever
  // locks its topic afterwards. External ids: the newest key published (fed_), raised in
  // that same critical section; a shared log's reader feeds in key order across topics
  // (fanwire.backends.reader), so this is as good a bound as the counter.
  std::optional<MessageKey> visible() const {
    if (!external) return MessageKey{epoch, last_seq.load()};
    std::lock_guard lock(fed_mu_);  // two words: a lock, not an atomic
    return fed_;
  }
  // External ids: a message with `key` is being appended (under its topic's lock).
  void fed(MessageKey key) {
    std::lock_guard lock(fed_mu_);
    fed_ = std::max(fed_, key);  // a smaller key later is visible at once, never held
  }

 private:
  mutable std::mutex fed_mu_;
  MessageKey fed_;
};

struct TopicStats {
  std::string name;
  size_t subscribers = 0;
  uint64_t messages = 0;
  uint64_t dropped = 0;
  size_t retained = 0;  // messages in the ring now
  uint64_t conflated = 0;  // skipped as superseded, for its conflate-policy subscribers
};

// Publishers of one topic are serialized by its mutex (assign id, append, check lag,
// wake parked subscribers); publishers of different topics run in parallel.
class Topic : public std::enable_shared_from_this<Topic> {
 public:
  // `max_age` > 0: messages older than that many seconds leave replay and resume at once
  // and the ring soon after (see trim_aged).
  Topic(std::string name, size_t retention, std::shared_ptr<Counters> counters,
        std::shared_ptr<Notifier> notifier, std::shared_ptr<const IdPolicy> ids,
        double max_age = 0, std::string conflate_key = {}, bool cache = false);

  const std::string& name() const { return name_; }
  // Keyed conflation: the top-level field of `data` whose value is a message's key.
  const std::string& conflate_key() const { return conflate_key_; }
  bool conflating() const { return !conflate_key_.empty(); }
  const IdPolicy& ids() const { return *ids_; }

  // Appends a message built by `make(key)` unless the topic is deleted (then nullopt).
  // Returns the message and the number of subscribers it reached.
  struct Published {
    MessagePtr message;
    size_t subscribers = 0;
    bool must_drain = false;
  };
  // `ckey`: the message's conflation key (conflating topics only; none: never skipped).
  template <class Make>
  std::optional<Published> publish(Make&& make, bool from_loop,
                                   std::optional<std::string_view> ckey = std::nullopt);
  // Appends `count` messages, `make(i)` for i in 0..count, in order, under one lock and
  // with one wake-up of the parked subscribers (a batch publish). Their bounds are held
  // per message, as if published one by one with no take in between. `ckeys[i]`: the
  // conflation key of message i (conflating topics only; empty otherwise).
  struct PublishedMany {
    std::vector<MessagePtr> messages;
    size_t subscribers = 0;
    bool must_drain = false;
  };
  template <class Make>
  std::optional<PublishedMany> publish_many(
      size_t count, Make&& make, bool from_loop,
      const std::vector<std::optional<std::string_view>>& ckeys = {});

  std::shared_ptr<Subscriber> subscribe(const SubscribeOptions& options);

  // Presence: a join/leave notice for every subscriber that asked for them
  // (Subscriber::set_join_leave), encoded once and shared by all of them, after the
  // messages published so far and before the next. Returns how many it reached;
  // `must_drain` as for a publish.
  size_t notify(bool join, std::string_view member_json, bool from_loop, bool& must_drain);

  // Closes every subscriber with `reason` and refuses further publishes.
  void close_all(CloseReason reason);
  // Settles every lazily bounded cursor first, so its drops are counted (see settle_locked).
  TopicStats stats();

 private:
  friend class Subscriber;

  void place(Subscriber& sub, const SubscribeOptions& options);
  void enforce_bounds();
  uint64_t young_begin(double now) const;
  void trim_aged(double now);
  void enforce_bounds(uint64_t end);
  void drop_oldest_locked(Subscriber& sub, uint64_t over);
  // A drop_oldest cursor of a topic that does not conflate, with no presence notice
  // waiting, is bounded lazily: its drops are applied (moved past and counted) when it
  // is next read, its topic's stats are read or it closes, not by the publisher. With
  // every subscriber at its bound, an eager check would scan them all on every publish.
  bool bounded_lazily(const Subscriber& sub) const;
  // Where `sub` reads next once its pending drops are applied.
  uint64_t cursor(const Subscriber& sub) const;
  void settle_locked(Subscriber& sub);
  void forget_front_key();
  void push_conflating(MessagePtr message, std::optional<std::string_view> ckey);
  // Appends one message under the lock, then holds the bounds (count, subscribers'
  // queues, age): the part of a publish shared by publish and publish_many.
  void push_locked(const MessagePtr& message, std::optional<std::string_view> ckey);
  void wake_parked(bool from_loop, bool& must_drain);
  // `sub` skips `count` superseded messages: told with its next take, counted now (as a
  // drop is), so /stats shows what its clients are told.
  void conflated_locked(Subscriber& sub, uint64_t count);
  void close_locked(Subscriber& sub, CloseReason reason);
  void unpark_locked(Subscriber& sub);
  void remove_locked(Subscriber& sub);

  mutable std::mutex mu_;
  const std::string name_;
  std::shared_ptr<Counters> counters_;
  std::shared_ptr<Notifier> notifier_;
  std::shared_ptr<const IdPolicy> ids_;
  Ring<MessagePtr> log_;
  std::optional<MessageKey> evicted_;   // newest key trimmed from the ring
  std::vector<Subscriber*> subscribers_;
  std::vector<Subscriber*> parked_;     // waiting for the next message
  // Lower bound of min(pos + capacity - notices waiting) over the subscribers that are
  // not bounded lazily.
  uint64_t deadline_ = UINT64_MAX;
  uint64_t published_ = 0;
  uint64_t dropped_ = 0;
  uint64_t conflated_ = 0;
  const double max_age_;
  const std::string conflate_key_;
  const bool cache_;
  // Conflating topics: one slot per ring position (in step with log_), and the position
  // of the latest message of each key retained. A publish costs one lookup and marks the
  // message it supersedes: cursors skip marked slots, no per-subscriber state.
  Ring<ConflateSlot> cslots_;
  std::unordered_map<std::string, uint64_t> latest_;
  double next_trim_ = 0;  // publish time from which the next trim_aged may run
  bool closed_ = false;
};

template <class Make>
std::optional<Topic::Published> Topic::publish(Make&& make, bool from_loop,
                                               std::optional<std::string_view> ckey) {
  std::lock_guard lock(mu_);
  if (closed_) return std::nullopt;
  Published out;
  out.message = make();
  push_locked(out.message, ckey);
  ++published_;
  counters_->published.fetch_add(1, std::memory_order_relaxed);
  wake_parked(from_loop, out.must_drain);
  out.subscribers = subscribers_.size();
  return out;
}

template <class Make>
std::optional<Topic::PublishedMany> Topic::publish_many(
    size_t count, Make&& make, bool from_loop,
    const std::vector<std::optional<std::string_view>>& ckeys) {
  std::lock_guard lock(mu_);
  if (closed_) return std::nullopt;
  PublishedMany out;
  out.messages.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    out.messages.push_back(make(i));
    push_locked(out.messages.back(), i < ckeys.size() ? ckeys[i] : std::nullopt);
  }
  published_ += count;
  counters_->published.fetch_add(count, std::memory_order_relaxed);
  wake_parked(from_loop, out.must_drain);
  out.subscribers = subscribers_.size();
  return out;
}

}  // namespace fanwire
