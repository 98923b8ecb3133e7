#include "fanwire/message.hpp"

#include "fanwire/wsframe.hpp"

#include <charconv>

namespace fanwire {
namespace {

std::optional<uint64_t> parse_u64(std::string_view text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// Publish time as JSON: fixed notation with microseconds, never an exponent.
std::string_view format_ts(double ts, char (&buf)[48]) {
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, ts, std::chars_format::fixed, 6);
  if (ec != std::errc{}) return "0";
  return std::string_view(buf, static_cast<size_t>(end - buf));
}

}  // namespace

std::optional<MessageKey> MessageKey::parse(std::string_view id) {
  auto dash = id.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto hi = parse_u64(id.substr(0, dash));
  auto lo = parse_u64(id.substr(dash + 1));
  if (!hi || !lo) return std::nullopt;
  return MessageKey{*hi, *lo};
}

std::string MessageKey::to_string() const {
  return std::to_string(hi) + "-" + std::to_string(lo);
}

void append_ws_header(std::string& out, size_t length) {
  ws::append_header(out, ws::Opcode::text, length);
}

std::string ws_frame(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 10);
  append_ws_header(out, text.size());
  out.append(text);
  return out;
}

Message::Message(MessageKey key, std::string buffer, size_t sse_len, size_t ws_text_offset,
                 size_t id_offset, size_t id_len, double ts, bool ends_topic)
    : key_(key), buffer_(std::move(buffer)), sse_len_(sse_len), ws_text_offset_(ws_text_offset),
      id_offset_(id_offset), id_len_(id_len), ts_(ts), ends_topic_(ends_topic) {
  live_.fetch_add(1, std::memory_order_relaxed);
}

Message::~Message() { live_.fetch_sub(1, std::memory_order_relaxed); }

std::shared_ptr<const Message> Message::make(MessageKey key, std::string_view id,
                                             std::string_view topic, std::string_view event,
                                             std::string_view data, double ts) {
  char ts_buf[48];
  const std::string_view ts_text = format_ts(ts, ts_buf);
  const std::string_view sse_event = event.empty() ? std::string_view("message") : event;

  std::string buf;
  buf.reserve(2 * data.size() + 2 * topic.size() + 2 * id.size() + event.size() +
              sse_event.size() + 2 * ts_text.size() + 96);
  // SSE frame: id / event / data lines, then a blank line. The `end` notice of a stream
  // (Broker.end) has no id line, so an EventSource reconnecting after it resumes before
  // it and is told `end` again instead of waiting for a message that never comes.
  const bool end = event == "end";
  size_t id_offset = 0;
  if (!end) {
    buf.append("id: ");
    id_offset = buf.size();
    buf.append(id).append("\n");
  }
  buf.append("event: ").append(sse_event);
  buf.append("\ndata: {\"topic\":\"").append(topic).append("\",\"data\":").append(data);
  buf.append(",\"ts\":").append(ts_text).append("}\n\n");
  const size_t sse_len = buf.size();
  // WebSocket event text (PROTOCOL.md); names are validated, so they need no escaping.
  // Its length goes in the frame header first, so the text is built apart.
  std::string ws;
  ws.reserve(data.size() + topic.size() + id.size() + event.size() + ts_text.size() + 80);
  ws.append("{\"type\":\"event\",\"topic\":\"").append(topic);
  ws.append("\",\"message_id\":\"");
  const size_t ws_id_offset = ws.size();
  ws.append(id).append("\",\"data\":").append(data);
  ws.append(",\"ts\":").append(ts_text);
  if (!event.empty()) ws.append(",\"event\":\"").append(event).append("\"");
  ws.append("}");
  append_ws_header(buf, ws.size());
  const size_t ws_text_offset = buf.size();
  buf.append(ws);
  if (end) id_offset = ws_text_offset + ws_id_offset;  // the id is only in the WS text
  return std::make_shared<const Message>(key, std::move(buf), sse_len, ws_text_offset, id_offset,
                                         id.size(), ts, end);
}

}  // namespace fanwire
