#include "fanwire/stream.hpp"

#include <algorithm>
#include <functional>

namespace fanwire {
namespace {

constexpr size_t kTakeAll = static_cast<size_t>(-1) / 2;

}  // namespace

const char* to_string(StreamEnd end) {
  switch (end) {
    case StreamEnd::none: return "";
    case StreamEnd::no_topics: return "no_topics";
    case StreamEnd::shutdown: return "shutdown";
    case StreamEnd::slow_consumer: return "slow_consumer";
    case StreamEnd::client_gone: return "client_gone";
    case StreamEnd::closed: return "closed";
  }
  return "";
}

Stream::Stream(Encoding encoding, std::vector<std::shared_ptr<Subscriber>> subs,
               bool end_when_empty)
    : encoding_(encoding), subs_(std::move(subs)), held_(subs_.size(), 0),
      ended_(subs_.size(), 0), end_when_empty_(end_when_empty) {}

void Stream::add(std::shared_ptr<Subscriber> sub, bool held) {
  subs_.push_back(std::move(sub));
  held_.push_back(held ? 1 : 0);
  ended_.push_back(0);
}

void Stream::release(const Subscriber& sub) {
  for (size_t i = 0; i < subs_.size(); ++i)
    if (subs_[i].get() == &sub) held_[i] = 0;
}

void Stream::mark_ended(const Subscriber& sub) {
  if (encoding_ != Encoding::sse) return;
  for (size_t i = 0; i < subs_.size(); ++i)
    if (subs_[i].get() == &sub) ended_[i] = 1;
}

bool Stream::remove(const Subscriber& sub) {
  for (size_t i = 0; i < subs_.size(); ++i) {
    if (subs_[i].get() == &sub) {
      remove_at(i);
      return true;
    }
  }
  return false;
}

void Stream::remove_at(size_t index) {
  subs_.erase(subs_.begin() + static_cast<std::ptrdiff_t>(index));
  held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(index));
  ended_.erase(ended_.begin() + static_cast<std::ptrdiff_t>(index));
}

void Stream::finish(StreamEnd end) {
  if (end_ != StreamEnd::none) return;
  end_ = end;
  for (auto& sub : subs_) sub->close();
  subs_.clear();
  held_.clear();
  ended_.clear();
}

bool Stream::arm() {
  bool parked = true;
  for (size_t i = 0; i < subs_.size(); ++i)  // every one, even after a false
    if (!held_[i]) parked &= subs_[i]->arm() && !ended_[i];  // an end to follow is ready
  return parked;
}

void Stream::take(Taken& out) {
  out.clear();
  out.encoding_ = encoding_;
  if (end_ != StreamEnd::none) return;
  if (!subs_.empty()) {
    if (out.runs_.size() < subs_.size()) out.runs_.resize(subs_.size());
    out.topics_.resize(subs_.size());
    out.used_ = subs_.size();
    // Read before any topic is locked: see IdPolicy::visible.
    const std::optional<MessageKey> through = subs_.front()->visible();
    for (size_t i = 0; i < subs_.size(); ++i) {
      if (held_[i]) continue;  // an empty TopicTake: nothing of it is looked at
      take_topic(i, through, out);
      TopicTake& topic = out.topics_[i];
      if (topic.dropped > 0 || topic.conflated > 0 || topic.reason != CloseReason::none)
        topic.topic = subs_[i]->topic_name();
      out.messages_ += topic.messages;
      out.dropped_ += topic.dropped;
    }
    out.merge();
    if (end_topics(out)) return;
  }
  if (end_when_empty_ && subs_.empty()) finish(StreamEnd::no_topics);
}

// Takes what topic `index` has ready into its run and TopicTake. In an SSE stream a topic
// whose producer ended it (its `end` message taken now, or delivered another way:
// mark_ended) and that nothing else closed ends as `ended`: what its ring holds after the
// end is not delivered.
void Stream::take_topic(size_t index, std::optional<MessageKey> through, Taken& out) {
  TopicTake& topic = out.topics_[index];
  if (ended_[index]) {  // nothing of it is taken
    topic.reason = CloseReason::ended;
    topic.ended = true;
    return;
  }
  std::vector<MessagePtr>& run = out.runs_[index];
  const TakeResult taken = subs_[index]->take(run, kTakeAll, through);
  topic.dropped = taken.dropped;
  topic.conflated = taken.conflated;
  topic.reason = taken.reason;
  topic.ended = taken.reason != CloseReason::none &&
                (taken.reason == CloseReason::slow_consumer || taken.left == 0);
  if (encoding_ == Encoding::sse) {
    const auto end = std::find_if(run.begin(), run.end(),
                                  [](const MessagePtr& m) { return m->ends_topic(); });
    if (end != run.end()) {
      run.erase(end + 1, run.end());
      if (taken.reason == CloseReason::none) {
        topic.reason = CloseReason::ended;
        topic.ended = true;
      }
    }
  }
  // (Presence notices are no messages: they have no id.)
  topic.messages = taken.notices == 0
                       ? run.size()
                       : static_cast<size_t>(std::count_if(
                             run.begin(), run.end(),
                             [](const MessagePtr& m) { return !m->id().empty(); }));
}

// The topics that ended, in stream order, after the take's messages; true once the
// whole stream ended.
bool Stream::end_topics(Taken& out) {
  size_t removed = 0;  // from the stream so far: its indexes shift
  for (size_t i = 0; i < out.topics_.size(); ++i) {
    const TopicTake& topic = out.topics_[i];
    if (!topic.ended) continue;
    if (end_topic(out, topic, i - removed)) return true;
    ++removed;
  }
  return false;
}

// One ended topic (see the class comment): true if it ends the whole stream, else it
// left the stream. A new per-topic end reason is one more case here (its notice, if the
// client is told in one, and whether the stream goes on).
bool Stream::end_topic(Taken& out, const TopicTake& topic, size_t index) {
  switch (topic.reason) {
    case CloseReason::shutdown:
      out.add_notice(notice::shutdown(encoding_, notice::now()));
      finish(StreamEnd::shutdown);
      return true;
    case CloseReason::slow_consumer:
      out.add_notice(notice::slow_consumer(encoding_, topic.topic));
      finish(StreamEnd::slow_consumer);
      return true;
    case CloseReason::topic_deleted:
      out.add_notice(notice::topic_deleted(encoding_, topic.topic));
      break;
    case CloseReason::ended:  // its `end` message is its notice, already in the take
      subs_[index]->close();
      break;
    case CloseReason::none:
    case CloseReason::unsubscribed:
      break;
  }
  remove_at(index);
  return false;
}

bool Stream::end_for_shutdown(std::string& out) {
  if (end_ != StreamEnd::none || !subs_.empty()) return false;
  out.append(notice::shutdown(encoding_, notice::now()));
  finish(StreamEnd::shutdown);
  return true;
}

bool Stream::end_if_closing(std::string& out) {
  for (const auto& sub : subs_) {
    const CloseReason reason = sub->close_reason();
    if (reason == CloseReason::slow_consumer) {
      out.append(notice::slow_consumer(encoding_, sub->topic_name()));
      finish(StreamEnd::slow_consumer);
      return true;
    }
    if (reason == CloseReason::shutdown) {
      out.append(notice::shutdown(encoding_, notice::now()));
      finish(StreamEnd::shutdown);
      return true;
    }
  }
  return false;
}

void Taken::clear() {
  for (size_t i = 0; i < used_; ++i) runs_[i].clear();
  used_ = 0;
  pieces_.clear();
  notices_.clear();
  topics_.clear();
  messages_ = 0;
  dropped_ = 0;
}

// A k-way merge by key (ties, possible between external ids of two topics, by topic
// order). One topic with messages, the usual case, is copied as it is.
void Taken::merge() {
  const auto runs = static_cast<uint32_t>(topics_.size());
  pieces_.reserve(messages_ + 1);
  heads_.assign(runs, 0);
  heap_.clear();
  for (uint32_t i = 0; i < runs; ++i)
    if (!runs_[i].empty()) heap_.emplace_back(runs_[i].front()->key(), i);
  if (heap_.size() == 1) {
    const uint32_t run = heap_.front().second;
    for (const auto& message : runs_[run]) add_piece(run, message.get());
  } else if (heap_.size() > 1) {
    const std::greater<> after;  // a min-heap of (next key, run)
    std::make_heap(heap_.begin(), heap_.end(), after);
    while (!heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end(), after);
      const uint32_t run = heap_.back().second;
      add_piece(run, runs_[run][heads_[run]].get());
      if (heads_[run] < runs_[run].size()) {
        heap_.back().first = runs_[run][heads_[run]]->key();
        std::push_heap(heap_.begin(), heap_.end(), after);
      } else {
        heap_.pop_back();
      }
    }
  }
  // A drop with nothing of its topic in this take (all it had left was skipped). Not
  // `messages == 0`: a run of presence notices alone has told it before its first piece.
  for (uint32_t i = 0; i < runs; ++i)
    if ((topics_[i].dropped > 0 || topics_[i].conflated > 0) && runs_[i].empty())
      add_notice(i);
}

void Taken::add_piece(uint32_t run, const Message* message) {
  if (heads_[run]++ == 0 && (topics_[run].dropped > 0 || topics_[run].conflated > 0))
    add_notice(run);
  pieces_.push_back(Piece{message, 0});
}

void Taken::add_notice(uint32_t run) {
  const TopicTake& topic = topics_[run];
  if (topic.dropped > 0) add_notice(notice::dropped(encoding_, topic.topic, topic.dropped));
  if (topic.conflated > 0)
    add_notice(notice::conflated(encoding_, topic.topic, topic.conflated));
}

void Taken::add_notice(std::string notice) {
  notices_.push_back(std::move(notice));
  pieces_.push_back(Piece{nullptr, static_cast<uint32_t>(notices_.size() - 1)});
}

std::string_view Taken::bytes(const Piece& piece) const {
  if (!piece.message) return notices_[piece.notice];
  switch (encoding_) {
    case Encoding::sse: return piece.message->sse();
    case Encoding::ws_text: return piece.message->ws();
    case Encoding::ws_frame: return piece.message->ws_frame();
  }
  return {};
}

size_t Taken::byte_size() const {
  size_t total = 0;
  for (const auto& piece : pieces_) total += bytes(piece).size();
  return total;
}

void Taken::append_to(std::string& out) const {
  out.reserve(out.size() + byte_size());
  for (const auto& piece : pieces_) out.append(bytes(piece));
}

}  // namespace fanwire
