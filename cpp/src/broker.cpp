#include "fanwire/broker.hpp"

#include <chrono>
#include <mutex>

namespace fanwire {
namespace {

uint64_t now_ms() {
  using namespace std::chrono;
  return static_cast<uint64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

Broker::Broker(size_t retention, uint64_t epoch, bool external_ids) : retention_(retention) {
  ids_->external = external_ids;
  ids_->epoch = epoch != 0 ? epoch : now_ms();
}

Broker::~Broker() { shutdown(); }

bool Broker::create_topic(std::string_view name, size_t retention, double max_age,
                          std::string_view conflate_key, bool cache) {
  std::unique_lock lock(mu_);
  if (topics_.find(name) != topics_.end()) return false;
  topics_.emplace(std::string(name),
                  std::make_shared<Topic>(std::string(name), retention ? retention : retention_,
                                          counters_, notifier_, ids_, max_age,
                                          std::string(conflate_key), cache));
  return true;
}

bool Broker::delete_topic(std::string_view name) {
  std::shared_ptr<Topic> topic;
  {
    std::unique_lock lock(mu_);
    auto it = topics_.find(name);
    if (it == topics_.end()) return false;
    topic = std::move(it->second);
    topics_.erase(it);
  }
  topic->close_all(CloseReason::topic_deleted);
  return true;
}

bool Broker::has_topic(std::string_view name) const { return find(name) != nullptr; }

size_t Broker::topic_count() const {
  std::shared_lock lock(mu_);
  return topics_.size();
}

std::vector<TopicStats> Broker::topic_stats() const {
  std::vector<std::shared_ptr<Topic>> topics;
  {
    std::shared_lock lock(mu_);
    topics.reserve(topics_.size());
    for (const auto& entry : topics_) topics.push_back(entry.second);
  }
  std::vector<TopicStats> out;
  out.reserve(topics.size());
  for (const auto& topic : topics) out.push_back(topic->stats());
  return out;
}

std::shared_ptr<Topic> Broker::find(std::string_view name) const {
  std::shared_lock lock(mu_);
  auto it = topics_.find(name);
  return it == topics_.end() ? nullptr : it->second;
}

PublishResult Broker::publish(std::string_view topic_name, std::string_view data,
                              std::string_view event, std::string_view id, bool from_loop,
                              double ts) {
  auto topic = find(topic_name);
  if (!topic) throw TopicNotFound(std::string(topic_name));
  // Own ids must all come from the counter: a merged take relies on it (IdPolicy::visible).
  if (!id.empty() && !ids_->external) throw std::invalid_argument("ids are assigned here");
  if (!id.empty() && !MessageKey::parse(id)) throw std::invalid_argument("bad message id");
  if (ts <= 0) ts = now_seconds();
  // The id is taken under the topic's lock, so ids increase in publish order per topic.
  auto make = [&] {
    if (!id.empty()) {
      const MessageKey key = *MessageKey::parse(id);
      ids_->fed(key);  // under the topic's lock, like an own id (IdPolicy::visible)
      return Message::make(key, id, topic_name, event, data, ts);
    }
    const MessageKey key{ids_->epoch, ids_->last_seq.fetch_add(1) + 1};
    return Message::make(key, key.to_string(), topic_name, event, data, ts);
  };
  std::optional<std::string_view> ckey;
  if (topic->conflating()) ckey = top_level_field(data, topic->conflate_key());
  auto published = topic->publish(make, from_loop, ckey);
  if (!published) throw TopicNotFound(std::string(topic_name));
  return PublishResult{std::string(published->message->id()), published->subscribers,
                       published->must_drain};
}

// The keys of a batch's external ids (none with own ids), every item checked first, so
// a refused batch publishes nothing.
std::vector<MessageKey> Broker::external_keys(const std::vector<BatchItem>& items) const {
  std::vector<MessageKey> keys;
  if (!ids_->external) {
    for (const auto& item : items)
      if (!item.id.empty()) throw std::invalid_argument("ids are assigned here");
    return keys;
  }
  keys.reserve(items.size());
  for (const auto& item : items) {
    if (item.id.empty()) throw std::invalid_argument("ids come from the shared log");
    auto key = MessageKey::parse(item.id);
    if (!key) throw std::invalid_argument("bad message id");
    keys.push_back(*key);
  }
  return keys;
}

PublishManyResult Broker::publish_many(std::string_view topic_name,
                                       const std::vector<BatchItem>& items, bool from_loop) {
  auto topic = find(topic_name);
  if (!topic) throw TopicNotFound(std::string(topic_name));
  const std::vector<MessageKey> keys = external_keys(items);
  const double now = now_seconds();
  // Ids taken under the topic's lock, as in publish: consecutive for the batch.
  auto make = [&](size_t i) {
    const BatchItem& item = items[i];
    if (ids_->external) {
      ids_->fed(keys[i]);  // under the topic's lock, as in publish
      return Message::make(keys[i], item.id, topic_name, item.event, item.data,
                           item.ts > 0 ? item.ts : now);
    }
    const MessageKey key{ids_->epoch, ids_->last_seq.fetch_add(1) + 1};
    return Message::make(key, key.to_string(), topic_name, item.event, item.data, now);
  };
  std::vector<std::optional<std::string_view>> ckeys;
  if (topic->conflating()) {
    ckeys.reserve(items.size());
    for (const auto& item : items)
      ckeys.push_back(top_level_field(item.data, topic->conflate_key()));
  }
  auto published = topic->publish_many(items.size(), make, from_loop, ckeys);
  if (!published) throw TopicNotFound(std::string(topic_name));
  PublishManyResult out;
  out.ids.reserve(items.size());
  for (const auto& message : published->messages) out.ids.emplace_back(message->id());
  out.subscribers = published->subscribers;
  out.must_drain = published->must_drain;
  return out;
}

PublishResult Broker::notify(std::string_view topic_name, bool join,
                             std::string_view member_json, bool from_loop) {
  auto topic = find(topic_name);
  if (!topic) throw TopicNotFound(std::string(topic_name));
  PublishResult out;  // no id: a notice is no message
  out.subscribers = topic->notify(join, member_json, from_loop, out.must_drain);
  return out;
}

std::shared_ptr<Subscriber> Broker::subscribe(std::string_view name,
                                              const SubscribeOptions& options) {
  auto topic = find(name);
  if (!topic) throw TopicNotFound(std::string(name));
  return topic->subscribe(options);
}

void Broker::shutdown() {
  TopicMap topics;
  {
    std::unique_lock lock(mu_);
    topics.swap(topics_);
  }
  for (auto& entry : topics) entry.second->close_all(CloseReason::shutdown);
}

BrokerCounters Broker::counters() const {
  // The topics' stats first: they count the drops their lazily bounded cursors owe.
  const std::vector<TopicStats> topics = topic_stats();
  BrokerCounters out{0, 0, counters_->published.load(), counters_->delivered.load(),
                     counters_->dropped.load(), counters_->conflated.load()};
  for (const auto& topic : topics) {
    out.messages += static_cast<int64_t>(topic.retained);
    out.subscribers += static_cast<int64_t>(topic.subscribers);
  }
  return out;
}

}  // namespace fanwire
