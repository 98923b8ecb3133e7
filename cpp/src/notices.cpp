#include "fanwire/notices.hpp"

#include <charconv>
#include <chrono>

#include "fanwire/message.hpp"

namespace fanwire::notice {
namespace {

// A JSON string. Topic names and ids are validated already (no quote, no control
// character), but a notice must stay valid JSON whatever it is given.
void append_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      out.append("\\u00").push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

void append_number(std::string& out, double value) {
  char buf[48];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed, 6);
  out.append(ec == std::errc{} ? std::string_view(buf, static_cast<size_t>(end - buf)) : "0");
}

// One notice: an SSE frame `event: <event>` with `data: {<sse>}`, or the WebSocket
// message {<ws>} (a text, or that text as a whole frame).
std::string finish(Encoding encoding, std::string_view event, const std::string& sse,
                   const std::string& ws) {
  std::string out;
  if (encoding == Encoding::sse) {
    out.append("event: ").append(event).append("\ndata: {").append(sse).append("}\n\n");
    return out;
  }
  out.append("{").append(ws).append("}");
  return encoding == Encoding::ws_frame ? ws_frame(out) : out;
}

std::string topic_field(std::string_view topic) {
  std::string out = "\"topic\":";
  append_string(out, topic);
  return out;
}

std::string info(std::string_view message) {
  return R"("type":"info","message":")" + std::string(message) + "\"";
}

}  // namespace

double now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string dropped(Encoding encoding, std::string_view topic, uint64_t count) {
  const std::string fields = topic_field(topic) + ",\"dropped\":" + std::to_string(count);
  return finish(encoding, "gap", fields, info("messages_dropped") + "," + fields);
}

std::string conflated(Encoding encoding, std::string_view topic, uint64_t count) {
  const std::string fields = topic_field(topic) + ",\"conflated\":" + std::to_string(count);
  return finish(encoding, "conflated", fields, info("messages_conflated") + "," + fields);
}

std::string gap(Encoding encoding, std::string_view topic,
                std::optional<std::string_view> first_available) {
  std::string fields = topic_field(topic) + ",\"first_available\":";
  if (first_available) {
    append_string(fields, *first_available);
  } else {
    fields.append("null");
  }
  return finish(encoding, "gap", fields, info("gap") + "," + fields);
}

std::string topic_deleted(Encoding encoding, std::string_view topic) {
  const std::string fields = topic_field(topic);
  return finish(encoding, "topic_deleted", fields, info("topic_deleted") + "," + fields);
}

std::string shutdown(Encoding encoding, double ts) {
  std::string sse = "\"ts\":";
  append_number(sse, ts);
  return finish(encoding, "shutdown", sse, info("shutdown"));
}

std::string slow_consumer(Encoding encoding, std::string_view topic) {
  const std::string sse = "\"code\":\"SLOW_CONSUMER\"," + topic_field(topic);
  std::string text = "queue of topic '";
  text.append(topic).append("' overflowed; closing");
  std::string ws = R"("type":"error","code":"SLOW_CONSUMER","message":)";
  append_string(ws, text);
  return finish(encoding, "error", sse, ws);
}

std::string heartbeat(Encoding encoding, double ts) {
  std::string sse = "\"ts\":";
  append_number(sse, ts);
  return finish(encoding, "heartbeat", sse, info("heartbeat") + "," + sse);
}

std::string member(Encoding encoding, bool join, std::string_view topic,
                   std::string_view member_json) {
  const std::string_view kind = join ? "join" : "leave";
  const std::string fields = topic_field(topic) + ",\"member\":" + std::string(member_json);
  return finish(encoding, kind, fields, info(kind) + "," + fields);
}

MessagePtr member_message(MessageKey key, bool join, std::string_view topic,
                          std::string_view member_json) {
  // The layout of Message: [SSE frame][WebSocket frame header][WebSocket text].
  std::string buffer = member(Encoding::sse, join, topic, member_json);
  const size_t sse_len = buffer.size();
  const std::string text = member(Encoding::ws_text, join, topic, member_json);
  append_ws_header(buffer, text.size());
  const size_t text_offset = buffer.size();
  buffer.append(text);
  return std::make_shared<const Message>(key, std::move(buffer), sse_len, text_offset, 0, 0);
}

}  // namespace fanwire::notice
