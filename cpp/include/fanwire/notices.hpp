// The protocol's notices (PROTOCOL.md), each encoded for a connection's encoding: the one
// place that spells them, for every writer (native SSE, WebSocket frames, ASGI paths).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fanwire/message.hpp"

namespace fanwire {

// How a connection's bytes are encoded: SSE frames, WebSocket texts, or whole WebSocket
// frames (written to the socket as they are).
enum class Encoding : uint8_t { sse, ws_text, ws_frame };

// Control frames carry no SSE `id:` (they must not move the client's Last-Event-ID).
// WebSocket notices are `info` messages, the slow consumer an `error`.
namespace notice {

// Seconds since the epoch, as the `ts` of heartbeats and the SSE shutdown.
double now();

// `gap` (SSE) / `info messages_dropped` (WebSocket): `count` messages dropped.
std::string dropped(Encoding encoding, std::string_view topic, uint64_t count);
// `conflated` (SSE) / `info messages_conflated` (WebSocket): `count` superseded messages
// skipped (keyed conflation).
std::string conflated(Encoding encoding, std::string_view topic, uint64_t count);
// A resume or a shared log that cannot give everything: `gap` with `first_available`
// (JSON null when nothing is retained).
std::string gap(Encoding encoding, std::string_view topic,
                std::optional<std::string_view> first_available);
std::string topic_deleted(Encoding encoding, std::string_view topic);
std::string shutdown(Encoding encoding, double ts);
// `error SLOW_CONSUMER` (disconnect policy): the stream ends after it.
std::string slow_consumer(Encoding encoding, std::string_view topic);
std::string heartbeat(Encoding encoding, double ts);
// Presence `join` / `leave`: `member_json` is the member object, already JSON (the
// Python side validates and encodes the client's info).
std::string member(Encoding encoding, bool join, std::string_view topic,
                   std::string_view member_json);
// The same notice in every encoding at once, as a Message with no id: one object that
// every subscriber asking for join/leave shares (Topic::notify), as a published message
// is shared. `key` only places it among a stream's topics (Taken::merge).
MessagePtr member_message(MessageKey key, bool join, std::string_view topic,
                          std::string_view member_json);

}  // namespace notice
}  // namespace fanwire
