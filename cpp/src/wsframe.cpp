#include "fanwire/wsframe.hpp"

#include <algorithm>

namespace fanwire::ws {

void append_header(std::string& out, Opcode opcode, size_t length) {
  out.push_back(static_cast<char>(0x80 | static_cast<uint8_t>(opcode)));
  if (length < 126) {
    out.push_back(static_cast<char>(length));
    return;
  }
  const int bytes = length < 65536 ? 2 : 8;
  out.push_back(static_cast<char>(bytes == 2 ? 126 : 127));
  for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((length >> shift) & 0xff));
}

namespace {
uint8_t byte_at(const std::string& s, size_t i) { return static_cast<uint8_t>(s[i]); }

}  // namespace

std::string frame(Opcode opcode, std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 10);
  append_header(out, opcode, payload.size());
  out.append(payload);
  return out;
}

std::string close_frame(uint16_t code, std::string_view reason) {
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xff));
  payload.append(reason.substr(0, 123));  // a control frame's payload is at most 125
  return frame(Opcode::close, payload);
}

bool valid_close_code(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

// UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates, nothing past U+10FFFF.
bool valid_utf8(std::string_view bytes) {
  const auto* s = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return false;
    if (i + len > n) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k)
      if ((s[i + k] & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

void Reader::feed(std::string_view bytes, std::vector<Inbound>& out) {
  if (done_) return;
  buf_.append(bytes);
  while (parse_one(out)) {
  }
  // Keep only the unparsed tail (cheap: at most one partial frame is left).
  if (done_) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  if (buf_.empty() && buf_.capacity() > 4096) buf_.shrink_to_fit();  // idle: no big buffer
}

bool Reader::fail(uint16_t code, std::vector<Inbound>& out) {
  done_ = true;
  message_.clear();
  Inbound error;
  error.kind = Inbound::Kind::error;
  error.code = code;
  out.push_back(std::move(error));
  return false;
}

bool Reader::parse_one(std::vector<Inbound>& out) {
  if (done_) return false;
  const size_t avail = buf_.size() - pos_;
  if (avail < 2) return false;
  const uint8_t b0 = byte_at(buf_, pos_), b1 = byte_at(buf_, pos_ + 1);
  const bool fin = b0 & 0x80;
  const auto opcode = static_cast<Opcode>(b0 & 0x0F);
  const bool is_control = (b0 & 0x08) != 0;
  if (b0 & 0x70) return fail(kProtocolError, out);  // RSV: no extension negotiated
  switch (opcode) {
    case Opcode::continuation: case Opcode::text: case Opcode::binary:
    case Opcode::close: case Opcode::ping: case Opcode::pong: break;
    default: return fail(kProtocolError, out);
  }
  if (!(b1 & 0x80)) return fail(kProtocolError, out);  // a client frame is masked
  uint64_t length = b1 & 0x7F;
  size_t header = 2;
  if (length == 126 || length == 127) {
    const size_t bytes = length == 126 ? 2 : 8;
    if (avail < 2 + bytes) return false;
    length = 0;
    for (size_t k = 0; k < bytes; ++k) length = (length << 8) | byte_at(buf_, pos_ + 2 + k);
    if (bytes == 8 && (length >> 63)) return fail(kProtocolError, out);
    header += bytes;
  }
  if (is_control && (!fin || length > 125)) return fail(kProtocolError, out);
  if (!is_control) {
    if (opcode == Opcode::continuation && !in_message_) return fail(kProtocolError, out);
    if (opcode != Opcode::continuation && in_message_) return fail(kProtocolError, out);
    if (message_.size() + length > max_message_) return fail(kTooBig, out);
  }
  header += 4;  // the mask
  if (avail < header || avail - header < length) return false;
  const size_t start = pos_ + header;
  uint8_t mask[4];
  for (size_t k = 0; k < 4; ++k) mask[k] = byte_at(buf_, start - 4 + k);
  std::string payload = buf_.substr(start, static_cast<size_t>(length));
  for (size_t k = 0; k < payload.size(); ++k) payload[k] = static_cast<char>(payload[k] ^ mask[k & 3]);
  pos_ = start + static_cast<size_t>(length);
  if (is_control) {
    control(opcode, std::move(payload), out);
    return !done_;
  }
  if (opcode != Opcode::continuation) {
    in_message_ = true;
    message_binary_ = opcode == Opcode::binary;
  }
  message_.append(payload);
  if (!fin) return true;
  in_message_ = false;
  if (!message_binary_ && !valid_utf8(message_)) return fail(kInvalidData, out);
  Inbound message;
  message.binary = message_binary_;
  message.payload.swap(message_);
  out.push_back(std::move(message));
  return true;
}

void Reader::control(Opcode opcode, std::string payload, std::vector<Inbound>& out) {
  Inbound in;
  if (opcode == Opcode::close) {
    if (payload.size() == 1) return void(fail(kProtocolError, out));
    in.kind = Inbound::Kind::close;
    in.code = kNormal;
    if (payload.size() >= 2) {
      in.code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                      static_cast<uint8_t>(payload[1]));
      if (!valid_close_code(in.code)) return void(fail(kProtocolError, out));
      in.payload = payload.substr(2);
      if (!valid_utf8(in.payload)) return void(fail(kInvalidData, out));
    }
    done_ = true;
    message_.clear();
  } else {
    in.kind = opcode == Opcode::ping ? Inbound::Kind::ping : Inbound::Kind::pong;
    in.payload = std::move(payload);
  }
  out.push_back(std::move(in));
}

}  // namespace fanwire::ws
