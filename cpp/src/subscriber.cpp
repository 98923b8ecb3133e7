#include "fanwire/subscriber.hpp"

#include <mutex>

#include "fanwire/topic.hpp"

namespace fanwire {

const char* to_string(CloseReason reason) {
  switch (reason) {
    case CloseReason::none: return "";
    case CloseReason::unsubscribed: return "unsubscribed";
    case CloseReason::slow_consumer: return "slow_consumer";
    case CloseReason::topic_deleted: return "topic_deleted";
    case CloseReason::shutdown: return "shutdown";
    case CloseReason::ended: return "ended";
  }
  return "";
}

Subscriber::Subscriber(std::shared_ptr<Topic> topic, const SubscribeOptions& options)
    : topic_(std::move(topic)), notifier_(topic_->notifier_),
      waiter_(options.waiter & Notifier::kWaiterMask),
      policy_(options.policy) {
  live_.fetch_add(1, std::memory_order_relaxed);
}

Subscriber::~Subscriber() {
  close();
  live_.fetch_sub(1, std::memory_order_relaxed);
}

const std::string& Subscriber::topic_name() const { return topic_->name(); }

bool Subscriber::arm() {
  std::lock_guard lock(topic_->mu_);
  if (reason_ != CloseReason::none || pos_ < topic_->log_.end() || !notices_.empty())
    return false;
  if (parked_index_ == npos) {
    parked_index_ = topic_->parked_.size();
    topic_->parked_.push_back(this);
  }
  return true;
}

TakeResult Subscriber::take(std::vector<MessagePtr>& out, size_t max,
                            std::optional<MessageKey> through) {
  std::lock_guard lock(topic_->mu_);
  topic_->settle_locked(*this);
  TakeResult result;
  result.reason = reason_;
  if (reason_ == CloseReason::slow_consumer) return result;
  const auto& log = topic_->log_;
  uint64_t end = std::min<uint64_t>(log.end(), pos_ + max);
  // Only conflating topics look at their slots: other topics take the plain loop.
  const bool skips =
      topic_->conflating() && (policy_ == Policy::conflate || pos_ < cache_end_);
  // Presence notices go in place: each before the message it was published ahead of.
  size_t notice = 0;
  const auto notices_before = [&](uint64_t pos) {
    while (notice < notices_.size() && notices_[notice].first <= pos)
      out.push_back(notices_[notice++].second);
  };
  uint64_t conflated = 0;
  for (uint64_t pos = pos_; pos < end; ++pos) {
    const MessageKey key = log.at(pos)->key();
    if (through && key > *through) {
      end = pos;
      break;
    }
    if (!notices_.empty()) notices_before(pos);
    if (floor_ && key <= *floor_) continue;
    if (skips) {
      const ConflateSlot& slot = topic_->cslots_.at(pos);
      if (pos < cache_end_) {
        if (!slot.keyed || slot.superseded) continue;  // the cache: latest of each key
      } else if (policy_ == Policy::conflate && slot.superseded) {
        ++conflated;
        continue;
      }
    }
    out.push_back(log.at(pos));
  }
  if (!notices_.empty()) {
    notices_before(end);
    notices_.erase(notices_.begin(), notices_.begin() + static_cast<std::ptrdiff_t>(notice));
    result.notices = notice;
  }
  if (conflated > 0) topic_->conflated_locked(*this, conflated);
  result.left = log.end() - end;
  // Held back entirely: the drop is told with the first message after it, next take.
  if (end == pos_ && result.left > 0) return result;
  topic_->counters_->delivered.fetch_add(end - pos_, std::memory_order_relaxed);
  pos_ = end;
  result.dropped = dropped_unreported_;
  dropped_unreported_ = 0;
  result.conflated = conflated_unreported_;
  conflated_unreported_ = 0;
  return result;
}

std::optional<MessageKey> Subscriber::visible() const { return topic_->ids().visible(); }

uint64_t Subscriber::pending() const {
  std::lock_guard lock(topic_->mu_);
  if (reason_ == CloseReason::slow_consumer) return 0;
  return topic_->log_.end() - topic_->cursor(*this) + notices_.size();
}

uint64_t Subscriber::dropped() {
  std::lock_guard lock(topic_->mu_);
  topic_->settle_locked(*this);
  return dropped_;
}

CloseReason Subscriber::close_reason() const {
  std::lock_guard lock(topic_->mu_);
  return reason_;
}

void Subscriber::redirect(std::shared_ptr<Notifier> notifier, uint64_t waiter) {
  std::lock_guard lock(topic_->mu_);
  notifier_ = std::move(notifier);
  waiter_ = waiter & Notifier::kWaiterMask;
  topic_->unpark_locked(*this);
}

void Subscriber::skip_through(MessageKey key) {
  std::lock_guard lock(topic_->mu_);
  floor_ = key;
}

void Subscriber::set_join_leave(bool on) {
  std::lock_guard lock(topic_->mu_);
  join_leave_ = on;
}

bool Subscriber::join_leave() const {
  std::lock_guard lock(topic_->mu_);
  return join_leave_;
}

void Subscriber::close() {
  std::lock_guard lock(topic_->mu_);
  topic_->close_locked(*this, CloseReason::unsubscribed);
}

}  // namespace fanwire
