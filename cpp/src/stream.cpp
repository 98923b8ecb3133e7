#include "fanwire/stream.hpp"

#include <algorithm>
#include <functional>

namespace fanwire {
namespace {

constexpr size_t kTakeAll = static_cast<size_t>(-1) / 2;

// The drop notice of PROTOCOL.md in `encoding` (topic names are validated: no escaping).
std::string drop_notice(Encoding encoding, std::string_view topic, uint64_t dropped) {
  const std::string count = std::to_string(dropped);
  std::string out;
  if (encoding == Encoding::sse) {
    out.append("event: gap\ndata: {\"topic\":\"").append(topic);
    out.append("\",\"dropped\":").append(count).append("}\n\n");
    return out;
  }
  out.append(R"({"type":"info","message":"messages_dropped","topic":")").append(topic);
  out.append("\",\"dropped\":").append(count).append("}");
  return encoding == Encoding::ws_frame ? ws_frame(out) : out;
}

// The conflation notice of PROTOCOL.md ("Keyed conflation"), like drop_notice.
std::string conflate_notice(Encoding encoding, std::string_view topic, uint64_t conflated) {
  const std::string count = std::to_string(conflated);
  std::string out;
  if (encoding == Encoding::sse) {
    out.append("event: conflated\ndata: {\"topic\":\"").append(topic);
    out.append("\",\"conflated\":").append(count).append("}\n\n");
    return out;
  }
  out.append(R"({"type":"info","message":"messages_conflated","topic":")").append(topic);
  out.append("\",\"conflated\":").append(count).append("}");
  return encoding == Encoding::ws_frame ? ws_frame(out) : out;
}

}  // namespace

Stream::Stream(Encoding encoding, std::vector<std::shared_ptr<Subscriber>> subs)
    : encoding_(encoding), subs_(std::move(subs)) {}

void Stream::add(std::shared_ptr<Subscriber> sub) { subs_.push_back(std::move(sub)); }

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
}

void Stream::close_all() {
  for (auto& sub : subs_) sub->close();
  subs_.clear();
}

bool Stream::arm() {
  bool parked = true;
  for (auto& sub : subs_) parked &= sub->arm();  // every one, even after a false
  return parked;
}

void Stream::take(Taken& out) const {
  out.clear();
  out.encoding_ = encoding_;
  if (subs_.empty()) return;
  if (out.runs_.size() < subs_.size()) out.runs_.resize(subs_.size());
  out.topics_.resize(subs_.size());
  out.used_ = subs_.size();
  // Read before any topic is locked: see IdPolicy::visible.
  const std::optional<MessageKey> through = subs_.front()->visible();
  for (size_t i = 0; i < subs_.size(); ++i) {
    const TakeResult taken = subs_[i]->take(out.runs_[i], kTakeAll, through);
    TopicTake& topic = out.topics_[i];
    topic.dropped = taken.dropped;
    topic.conflated = taken.conflated;
    topic.messages = out.runs_[i].size();
    topic.reason = taken.reason;
    topic.ended = taken.reason != CloseReason::none &&
                  (taken.reason == CloseReason::slow_consumer || taken.left == 0);
    out.messages_ += topic.messages;
    out.dropped_ += taken.dropped;
  }
  out.merge(subs_);
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
void Taken::merge(const std::vector<std::shared_ptr<Subscriber>>& subs) {
  const auto runs = static_cast<uint32_t>(topics_.size());
  pieces_.reserve(messages_ + 1);
  heads_.assign(runs, 0);
  heap_.clear();
  for (uint32_t i = 0; i < runs; ++i)
    if (!runs_[i].empty()) heap_.emplace_back(runs_[i].front()->key(), i);
  if (heap_.size() == 1) {
    const uint32_t run = heap_.front().second;
    for (const auto& message : runs_[run]) add_piece(subs, run, message.get());
  } else if (heap_.size() > 1) {
    const std::greater<> after;  // a min-heap of (next key, run)
    std::make_heap(heap_.begin(), heap_.end(), after);
    while (!heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end(), after);
      const uint32_t run = heap_.back().second;
      add_piece(subs, run, runs_[run][heads_[run]].get());
      if (heads_[run] < runs_[run].size()) {
        heap_.back().first = runs_[run][heads_[run]]->key();
        std::push_heap(heap_.begin(), heap_.end(), after);
      } else {
        heap_.pop_back();
      }
    }
  }
  // A drop with no message of its topic in this take (all it had left was skipped).
  for (uint32_t i = 0; i < runs; ++i)
    if ((topics_[i].dropped > 0 || topics_[i].conflated > 0) && topics_[i].messages == 0)
      add_notice(subs, i);
}

void Taken::add_piece(const std::vector<std::shared_ptr<Subscriber>>& subs, uint32_t run,
                      const Message* message) {
  if (heads_[run]++ == 0 && (topics_[run].dropped > 0 || topics_[run].conflated > 0))
    add_notice(subs, run);
  pieces_.push_back(Piece{message, 0});
}

void Taken::add_notice(const std::vector<std::shared_ptr<Subscriber>>& subs, uint32_t run) {
  const TopicTake& topic = topics_[run];
  if (topic.dropped > 0) {
    notices_.push_back(drop_notice(encoding_, subs[run]->topic_name(), topic.dropped));
    pieces_.push_back(Piece{nullptr, static_cast<uint32_t>(notices_.size() - 1)});
  }
  if (topic.conflated > 0) {
    notices_.push_back(conflate_notice(encoding_, subs[run]->topic_name(), topic.conflated));
    pieces_.push_back(Piece{nullptr, static_cast<uint32_t>(notices_.size() - 1)});
  }
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
