#include "fanwire/topic.hpp"

#include <algorithm>
#include <chrono>

#include "fanwire/notices.hpp"

namespace fanwire {

Topic::Topic(std::string name, size_t retention, std::shared_ptr<Counters> counters,
             std::shared_ptr<Notifier> notifier, std::shared_ptr<const IdPolicy> ids,
             double max_age, std::string conflate_key, bool cache)
    : name_(std::move(name)), counters_(std::move(counters)), notifier_(std::move(notifier)),
      ids_(std::move(ids)), log_(retention), max_age_(max_age),
      conflate_key_(std::move(conflate_key)), cache_(cache && !conflate_key_.empty()),
      cslots_(conflate_key_.empty() ? 1 : retention) {}

// The front message is leaving the ring: if it is its key's latest, the key is gone.
void Topic::forget_front_key() {
  const ConflateSlot& slot = cslots_.front();
  if (!slot.keyed) return;
  auto it = latest_.find(slot.key);
  if (it != latest_.end() && it->second == cslots_.begin()) latest_.erase(it);
}

void Topic::push_locked(const MessagePtr& message, std::optional<std::string_view> ckey) {
  if (conflating()) {
    push_conflating(message, ckey);
  } else {
    if (log_.full()) evicted_ = log_.front()->key();
    log_.push(message);
  }
  if (log_.end() > deadline_) enforce_bounds();
  if (max_age_ > 0 && message->ts() >= next_trim_) trim_aged(message->ts());
}

// Appends `message` of key `ckey` to a conflating topic. In this order: it supersedes
// its key's latest; cursors about to lag past the ring skip (or lose) the front while its
// slot still describes it; then the front leaves and the message goes in.
void Topic::push_conflating(MessagePtr message, std::optional<std::string_view> ckey) {
  const uint64_t pos = log_.end();
  ConflateSlot slot;
  if (ckey) {
    slot.keyed = true;
    slot.key = std::string(*ckey);
    auto [it, inserted] = latest_.try_emplace(slot.key, pos);
    if (!inserted) {
      cslots_.at(it->second).superseded = true;
      it->second = pos;
    }
  }
  if (pos + 1 > deadline_) enforce_bounds(pos + 1);
  if (log_.full()) {
    evicted_ = log_.front()->key();
    forget_front_key();
  }
  log_.push(std::move(message));
  cslots_.push(std::move(slot));
}

namespace {
double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}
}  // namespace

// First position whose message is not older than max_age at `now` (end() if none):
// replay and resume start there, whatever the ring still holds before it.
uint64_t Topic::young_begin(double now) const {
  uint64_t pos = log_.begin();
  if (max_age_ <= 0) return pos;
  const double cutoff = now - max_age_;
  while (pos < log_.end() && log_.at(pos)->ts() < cutoff) ++pos;
  return pos;
}

// Releases the aged messages no subscriber still has to read (a lagging one keeps its
// backlog: it loses it only by its queue's policy). Scans the subscribers, so it runs at
// most once per max_age / 16 of publish time, not per publish.
void Topic::trim_aged(double now) {
  next_trim_ = now + max_age_ / 16;
  uint64_t limit = young_begin(now);
  for (const Subscriber* sub : subscribers_) limit = std::min(limit, cursor(*sub));
  while (log_.begin() < limit) {
    evicted_ = log_.front()->key();
    log_.pop_front();
    if (conflating()) {
      forget_front_key();
      cslots_.pop_front();
    }
  }
}

std::shared_ptr<Subscriber> Topic::subscribe(const SubscribeOptions& options) {
  auto sub = std::make_shared<Subscriber>(shared_from_this(), options);
  std::lock_guard lock(mu_);
  if (closed_) {
    sub->reason_ = CloseReason::topic_deleted;
    return sub;
  }
  place(*sub, options);
  sub->index_ = subscribers_.size();
  subscribers_.push_back(sub.get());
  if (!bounded_lazily(*sub)) deadline_ = std::min(deadline_, sub->pos_ + sub->capacity_);
  return sub;
}

// Sets the subscriber's cursor for its replay (last_n) or resume (since), and its
// capacity: the queue size, or the replay if that is larger, never beyond retention.
void Topic::place(Subscriber& sub, const SubscribeOptions& options) {
  const IdPolicy& ids = *ids_;
  const uint64_t end = log_.end();
  const uint64_t begin = young_begin(now_seconds());
  uint64_t pos = end;
  if (options.since) {
    auto key = MessageKey::parse(*options.since);
    bool ours = key && (ids.external ||
                        (key->hi == ids.epoch && key->lo <= ids.last_seq.load()));
    if (!ours) {
      sub.gap_ = true;
      pos = begin;
    } else {
      // First retained message after the resume id (keys increase along the ring).
      uint64_t lo = log_.begin(), hi = end;
      while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (log_.at(mid)->key() <= *key) lo = mid + 1; else hi = mid;
      }
      pos = lo;
      sub.gap_ = evicted_ && *key < *evicted_;
      if (pos < begin) {  // messages after the resume id aged out
        pos = begin;
        sub.gap_ = true;
      }
    }
    if (sub.gap_ && begin < end) sub.first_available_ = std::string(log_.at(begin)->id());
  } else if (options.last_n > 0) {
    pos = end - std::min<uint64_t>(options.last_n, end - begin);
  } else if (cache_) {
    pos = begin;  // the latest message of every key retained, then live ones
    sub.cache_end_ = end;
  }
  sub.pos_ = pos;
  // A conflating cursor may lag the whole retention: it skips rather than drops.
  const bool conflates = options.policy == Policy::conflate && conflating();
  const uint64_t queue = conflates ? log_.capacity()
                                   : std::clamp<uint64_t>(options.queue_size, 1, log_.capacity());
  sub.capacity_ = std::max<uint64_t>(queue, end - pos);
}

// Runs when some subscriber may lag beyond its capacity: drop or disconnect it, and
// recompute the deadline. Consumers only move forward, so the deadline stays a lower
// bound between scans and this runs about once per `capacity` publishes, not per publish.
void Topic::enforce_bounds() { enforce_bounds(log_.end()); }

// `end`: the ring's end once the message being published is in (see push_conflating).
void Topic::enforce_bounds(uint64_t end) {
  uint64_t deadline = UINT64_MAX;
  for (size_t i = 0; i < subscribers_.size();) {
    Subscriber& sub = *subscribers_[i];
    if (bounded_lazily(sub)) {
      ++i;
      continue;
    }
    // Its window holds the messages from its cursor and its presence notices.
    const uint64_t lag = end - sub.pos_ + sub.notices_.size();
    if (lag > sub.capacity_) {
      if (sub.policy_ == Policy::disconnect) {
        close_locked(sub, CloseReason::slow_consumer);
        continue;  // swap-removed: index i now holds another subscriber
      }
      drop_oldest_locked(sub, lag - sub.capacity_);
    }
    deadline = std::min(deadline, sub.pos_ + sub.capacity_ - sub.notices_.size());
    ++i;
  }
  deadline_ = deadline;
}

// Drops the `over` oldest entries of `sub`'s window, in the order it would receive them:
// messages from its cursor and the presence notices placed among them. Each is counted
// and told with its next take (messages_dropped), except what conflation skips anyway.
// Never its newest entry (over < its window), so the cursor stays before the ring's end.
void Topic::drop_oldest_locked(Subscriber& sub, uint64_t over) {
  auto& notices = sub.notices_;
  uint64_t lost = 0;
  uint64_t skipped = 0;  // superseded anyway (conflation): skipped, not lost
  size_t notices_lost = 0;
  if (notices.empty() && !conflating()) {  // the common case: just the cursor
    sub.pos_ += over;
    lost = over;
    over = 0;
  }
  for (; over > 0; --over) {
    if (notices_lost < notices.size() && notices[notices_lost].first <= sub.pos_) {
      ++notices_lost;  // a notice goes before the message at its position
      ++lost;
      continue;
    }
    const uint64_t pos = sub.pos_++;
    if (conflating()) {  // what was superseded anyway is skipped, not lost
      const ConflateSlot& slot = cslots_.at(pos);
      if (pos < sub.cache_end_ ? (!slot.keyed || slot.superseded)
                               : (sub.policy_ == Policy::conflate && slot.superseded)) {
        if (pos >= sub.cache_end_) ++skipped;
        continue;
      }
    }
    ++lost;
  }
  notices.erase(notices.begin(), notices.begin() + static_cast<std::ptrdiff_t>(notices_lost));
  if (skipped > 0) conflated_locked(sub, skipped);
  sub.dropped_ += lost;
  sub.dropped_unreported_ += lost;
  dropped_ += lost;
  counters_->dropped.fetch_add(lost, std::memory_order_relaxed);
}

bool Topic::bounded_lazily(const Subscriber& sub) const {
  // A closed one is settled as it closes (close_locked) and no longer bounded.
  return sub.policy_ == Policy::drop_oldest && sub.notices_.empty() && !conflating() &&
         sub.reason_ == CloseReason::none;
}

uint64_t Topic::cursor(const Subscriber& sub) const {
  if (!bounded_lazily(sub)) return sub.pos_;
  const uint64_t end = log_.end();
  return std::max(sub.pos_, end > sub.capacity_ ? end - sub.capacity_ : 0);
}

void Topic::settle_locked(Subscriber& sub) {
  const uint64_t pos = cursor(sub);
  if (pos > sub.pos_) drop_oldest_locked(sub, pos - sub.pos_);
}

void Topic::wake_parked(bool from_loop, bool& must_drain) {
  for (Subscriber* sub : parked_) {
    sub->parked_index_ = Subscriber::npos;
    // Only the loop's own notifier may skip the fd when publishing from the loop.
    const bool loop_notifier = sub->notifier_ == notifier_;
    must_drain |= sub->notifier_->push(sub->waiter_, !(from_loop && loop_notifier));
  }
  parked_.clear();
}

size_t Topic::notify(bool join, std::string_view member_json, bool from_loop,
                     bool& must_drain) {
  std::lock_guard lock(mu_);
  if (closed_) return 0;
  MessagePtr notice;
  size_t reached = 0;
  const uint64_t end = log_.end();
  for (size_t i = 0; i < subscribers_.size();) {
    Subscriber& sub = *subscribers_[i];
    if (!sub.join_leave_) {
      ++i;
      continue;
    }
    if (!notice) {
      // Its key orders it after every message published so far, of every topic, in a
      // stream of several topics (a key issued before is in its ring: IdPolicy::visible).
      const MessageKey key = ids_->visible().value_or(MessageKey{});
      notice = notice::member_message(key, join, name_, member_json);
    }
    settle_locked(sub);  // from here on its bound is held eagerly, notices in place
    sub.notices_.emplace_back(end, notice);
    ++reached;
    // A notice takes a place in the window like a message, so a listener that stopped
    // reading holds at most its queue's worth: past that, its policy applies.
    const uint64_t lag = end - sub.pos_ + sub.notices_.size();
    if (lag > sub.capacity_) {
      if (sub.policy_ == Policy::disconnect) {
        close_locked(sub, CloseReason::slow_consumer);
        continue;  // swap-removed: index i now holds another subscriber
      }
      drop_oldest_locked(sub, lag - sub.capacity_);
    }
    deadline_ = std::min(deadline_, sub.pos_ + sub.capacity_ - sub.notices_.size());
    if (sub.parked_index_ != Subscriber::npos) {
      unpark_locked(sub);
      const bool loop_notifier = sub.notifier_ == notifier_;
      must_drain |= sub.notifier_->push(sub.waiter_, !(from_loop && loop_notifier));
    }
    ++i;
  }
  return reached;
}

void Topic::close_all(CloseReason reason) {
  std::lock_guard lock(mu_);
  closed_ = true;
  while (!subscribers_.empty()) close_locked(*subscribers_.back(), reason);
}

void Topic::conflated_locked(Subscriber& sub, uint64_t count) {
  sub.conflated_unreported_ += count;
  conflated_ += count;
  counters_->conflated.fetch_add(count, std::memory_order_relaxed);
}

// Closes `sub` and wakes its waiter: it still reads what it had pending (except a slow
// consumer, which is cut off), then sees the reason.
void Topic::close_locked(Subscriber& sub, CloseReason reason) {
  if (sub.reason_ != CloseReason::none) return;
  settle_locked(sub);  // what it lost is counted; what it still reads is its window
  sub.reason_ = reason;
  remove_locked(sub);
  // A slow consumer is cut off: it will not read its notices either.
  if (reason == CloseReason::slow_consumer) decltype(sub.notices_)().swap(sub.notices_);
  if (reason == CloseReason::unsubscribed) return;
  const bool ends_connection = reason == CloseReason::slow_consumer ||
                               reason == CloseReason::shutdown;
  sub.notifier_->push(sub.waiter_ | (ends_connection ? Notifier::kClosingBit : 0), true);
}

void Topic::unpark_locked(Subscriber& sub) {
  if (sub.parked_index_ == Subscriber::npos) return;
  Subscriber* last = parked_.back();
  parked_[sub.parked_index_] = last;
  last->parked_index_ = sub.parked_index_;
  parked_.pop_back();
  sub.parked_index_ = Subscriber::npos;
}

void Topic::remove_locked(Subscriber& sub) {
  unpark_locked(sub);
  if (sub.index_ == Subscriber::npos) return;
  Subscriber* last = subscribers_.back();
  subscribers_[sub.index_] = last;
  last->index_ = sub.index_;
  subscribers_.pop_back();
  sub.index_ = Subscriber::npos;
}

TopicStats Topic::stats() {
  std::lock_guard lock(mu_);
  for (Subscriber* sub : subscribers_) settle_locked(*sub);
  const uint64_t retained = log_.end() - young_begin(now_seconds());
  return TopicStats{name_, subscribers_.size(), published_, dropped_, retained, conflated_};
}

}  // namespace fanwire
