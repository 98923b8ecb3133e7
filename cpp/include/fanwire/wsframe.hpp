// WebSocket framing (RFC 6455) for connections the core owns after the handshake: client
// frames parsed, server frames encoded. No extension is ever negotiated on these
// connections (a permessage-deflate one stays on the Python path), so RSV bits are errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fanwire::ws {

enum class Opcode : uint8_t {
  continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA
};

// Close codes the core sends (RFC 6455 section 7.4.1).
inline constexpr uint16_t kNormal = 1000;
inline constexpr uint16_t kGoingAway = 1001;
inline constexpr uint16_t kProtocolError = 1002;
inline constexpr uint16_t kInvalidData = 1007;  // a text message that is not UTF-8
inline constexpr uint16_t kPolicy = 1008;
inline constexpr uint16_t kTooBig = 1009;

// One whole, unmasked server frame (FIN set).
std::string frame(Opcode opcode, std::string_view payload);
// Appends an unmasked final frame's header (server frames) for `length` payload bytes.
void append_header(std::string& out, Opcode opcode, size_t length);
// A close frame with `code` (and an optional reason, at most 123 bytes).
std::string close_frame(uint16_t code, std::string_view reason = {});
bool valid_utf8(std::string_view bytes);
// A close code a peer may send (1000-1003, 1007-1014, 3000-4999).
bool valid_close_code(uint16_t code);

// What a client sent, one complete thing at a time.
struct Inbound {
  enum class Kind : uint8_t { message, ping, pong, close, error };
  Kind kind = Kind::message;
  bool binary = false;  // message: a binary one (else UTF-8 text, checked)
  uint16_t code = 0;    // close: the client's code (kNormal when it gave none); error: ours
  std::string payload;  // message / ping / pong data; close: the client's reason
};

// Incremental parser of client frames: fed whatever recv() returned, it yields complete
// messages (fragments joined), control frames, and at most one close or error, after
// which it parses nothing more. Every client frame must be masked (RFC 6455 5.1); a
// message may be at most `max_message` bytes (else error 1009, seen from the header, so
// nothing that big is ever buffered).
class Reader {
 public:
  explicit Reader(size_t max_message) : max_message_(max_message) {}

  void feed(std::string_view bytes, std::vector<Inbound>& out);
  // A close or an error was yielded: the rest of the input is ignored.
  bool done() const { return done_; }
  // Bytes held for an incomplete frame or message (the connection's read-side cost).
  size_t buffered() const { return buf_.size() - pos_ + message_.size(); }

 private:
  // Parses one frame from buf_ at pos_; false when more bytes are needed or done.
  bool parse_one(std::vector<Inbound>& out);
  void control(Opcode opcode, std::string payload, std::vector<Inbound>& out);
  bool fail(uint16_t code, std::vector<Inbound>& out);  // always false

  size_t max_message_;
  std::string buf_;
  size_t pos_ = 0;
  std::string message_;   // fragments of the message in progress
  bool in_message_ = false;
  bool message_binary_ = false;
  bool done_ = false;
};

}  // namespace fanwire::ws
