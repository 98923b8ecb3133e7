// Immutable, reference-counted messages, encoded once at publish time.
#pragma once

#include <atomic>
#include <compare>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace fanwire {

// A message id "<hi>-<lo>" seen as a number pair, so ids can be ordered. The broker's own
// ids are "<epoch>-<seq>"; Redis stream ids are "<ms>-<seq>": both compare as (hi, lo).
struct MessageKey {
  uint64_t hi = 0;
  uint64_t lo = 0;
  auto operator<=>(const MessageKey&) const = default;

  // nullopt for anything that is not two decimal numbers joined by '-'.
  static std::optional<MessageKey> parse(std::string_view id);
  std::string to_string() const;
};

// Appends the header of an unmasked, final WebSocket text frame of `length` bytes.
void append_ws_header(std::string& out, size_t length);
// A whole WebSocket text frame carrying `text` (for notices written next to events).
std::string ws_frame(std::string_view text);

// One published message: its key and id, and the bytes every subscriber receives, so
// delivery to N subscribers copies N pointers, never N payloads. The encodings live in
// one buffer: [SSE frame][WebSocket frame header][WebSocket event text], so both the
// text and the whole frame are contiguous views.
class Message {
 public:
  // `data` must be compact JSON (no raw CR/LF); topic and event are validated names.
  static std::shared_ptr<const Message> make(MessageKey key, std::string_view id,
                                             std::string_view topic, std::string_view event,
                                             std::string_view data, double ts);

  Message(MessageKey key, std::string buffer, size_t sse_len, size_t ws_text_offset,
          size_t id_offset, size_t id_len, double ts = 0, bool ends_topic = false);
  ~Message();
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;

  MessageKey key() const { return key_; }
  double ts() const { return ts_; }  // publish time, epoch seconds (topic max_age)
  std::string_view id() const { return std::string_view(buffer_).substr(id_offset_, id_len_); }
  std::string_view sse() const { return std::string_view(buffer_).substr(0, sse_len_); }
  std::string_view ws() const { return std::string_view(buffer_).substr(ws_text_offset_); }
  std::string_view ws_frame() const { return std::string_view(buffer_).substr(sse_len_); }
  // Of the reserved event type `end` (Broker.end): its producer ended the topic's stream
  // (an SSE stream lets the topic go after it: Stream::take).
  bool ends_topic() const { return ends_topic_; }

  // Messages alive in this process, of every broker: lets tests prove that nothing leaks
  // (a broker's own counts are Broker::counters()).
  static int64_t live_in_process() { return live_.load(std::memory_order_relaxed); }

 private:
  MessageKey key_;
  std::string buffer_;
  size_t sse_len_;
  size_t ws_text_offset_;
  size_t id_offset_;
  size_t id_len_;
  double ts_;
  bool ends_topic_;
  static inline std::atomic<int64_t> live_{0};
};

using MessagePtr = std::shared_ptr<const Message>;

}  // namespace fanwire
