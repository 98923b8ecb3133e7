// The broker: topics by name, message ids, the notifier and shutdown.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fanwire/notifier.hpp"
#include "fanwire/topic.hpp"

namespace fanwire {

struct TopicNotFound : std::out_of_range {
  using std::out_of_range::out_of_range;
};

struct PublishResult {
  std::string id;
  size_t subscribers = 0;
  bool must_drain = false;  // see Notifier::push
};

// A batch publish: the ids in order, and the subscribers the batch reached.
struct PublishManyResult {
  std::vector<std::string> ids;
  size_t subscribers = 0;
  bool must_drain = false;
};

// One message of a batch publish. `id` and `ts` only with external ids (a shared log's
// reader feeding a run of its entries): the entry's id and its publisher's time.
struct BatchItem {
  std::string_view data;
  std::string_view event;
  std::string_view id = {};
  double ts = 0;
};

// Counts of this broker only (two brokers in one process never see each other's).
struct BrokerCounters {
  int64_t messages = 0;     // retained by its topics
  int64_t subscribers = 0;  // open subscribers of its topics
  uint64_t published = 0;
  uint64_t delivered = 0;
  uint64_t dropped = 0;
  uint64_t conflated = 0;  // skipped as superseded by conflate-policy subscribers
};

class Broker {
 public:
  // `epoch` 0 means "now in milliseconds". With `external_ids`, every publish brings its
  // own id (e.g. a Redis stream id) and resume ids are trusted if they parse; without,
  // the broker assigns every id (a publish bringing one is refused).
  explicit Broker(size_t retention, uint64_t epoch = 0, bool external_ids = false);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  uint64_t epoch() const { return ids_->epoch; }
  bool external_ids() const { return ids_->external; }
  int fd() const { return notifier_->fd(); }
  const std::shared_ptr<Notifier>& notifier() const { return notifier_; }
  // Client messages of native WebSockets wake the loop through this one: it is drained at
  // once, not at the subscribers' rate-limited rounds (see Writer).
  int inbox_fd() const { return inbox_->fd(); }
  const std::shared_ptr<Notifier>& inbox() const { return inbox_; }

  // `retention` 0: the broker's; `max_age` 0: no age limit (Topic).
  // `conflate_key` (not empty): keyed conflation on that top-level field of `data`;
  // `cache`: a new subscriber gets the latest message of every key first (Topic).
  bool create_topic(std::string_view name, size_t retention = 0, double max_age = 0,
                    std::string_view conflate_key = {}, bool cache = false);
  bool delete_topic(std::string_view name);
  bool has_topic(std::string_view name) const;
  size_t topic_count() const;
  std::vector<TopicStats> topic_stats() const;

  // Thread-safe; never waits for a subscriber. Throws TopicNotFound, and
  // std::invalid_argument for a bad `id` (or any `id` without external ids). `ts` 0 means now
  // (a shared log's reader passes the publisher's time, so every node shows the same).
  PublishResult publish(std::string_view topic, std::string_view data, std::string_view event,
                        std::string_view id = {}, bool from_loop = false, double ts = 0);
  // A batch: every item appended to `topic` in order, under one lock of the topic, with
  // one wake-up of its subscribers. The broker assigns every id, or with external ids
  // each item brings its own (increasing, as in publish); std::invalid_argument for an
  // item with an id it should not have, without one it needs, or a bad one (then none
  // is published). Throws TopicNotFound.
  PublishManyResult publish_many(std::string_view topic, const std::vector<BatchItem>& items,
                                 bool from_loop = false);
  // Presence: a join/leave notice to the subscribers of `topic` that asked for them
  // (Topic::notify), in one call. Throws TopicNotFound.
  PublishResult notify(std::string_view topic, bool join, std::string_view member_json,
                       bool from_loop = false);
  // Throws TopicNotFound.
  std::shared_ptr<Subscriber> subscribe(std::string_view topic, const SubscribeOptions& options);

  void drain(std::vector<uint64_t>& out) { notifier_->drain(out); }
  void drain_inbox(std::vector<uint64_t>& out) { inbox_->drain(out); }
  // Closes every subscriber (each is woken with the closing bit) and deletes all topics.
  void shutdown();
  BrokerCounters counters() const;

 private:
  std::vector<MessageKey> external_keys(const std::vector<BatchItem>& items) const;
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using TopicMap =
      std::unordered_map<std::string, std::shared_ptr<Topic>, NameHash, std::equal_to<>>;

  std::shared_ptr<Topic> find(std::string_view name) const;

  const size_t retention_;
  std::shared_ptr<IdPolicy> ids_ = std::make_shared<IdPolicy>();
  std::shared_ptr<Counters> counters_ = std::make_shared<Counters>();
  std::shared_ptr<Notifier> notifier_ = std::make_shared<Notifier>();
  std::shared_ptr<Notifier> inbox_ = std::make_shared<Notifier>();
  mutable std::shared_mutex mu_;
  TopicMap topics_;
};

}  // namespace fanwire
