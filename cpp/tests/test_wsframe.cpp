// WebSocket framing (wsframe.hpp): client frames parsed whole or byte by byte, every
// protocol error with its close code, server frames encoded (run under TSan and ASan by
// tests/test_cpp.py).
#include <string>
#include <vector>

#include "check.hpp"
#include "fanwire/wsframe.hpp"

using namespace fanwire::ws;
using Kind = Inbound::Kind;

namespace {

// A client frame: masked with a fixed key (what a browser sends).
std::string client(uint8_t first, std::string_view payload, bool masked = true) {
  std::string out;
  out.push_back(static_cast<char>(first));
  const uint8_t mask_bit = masked ? 0x80 : 0;
  const size_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(mask_bit | n));
  } else if (n < 65536) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
  }
  const char key[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked) out.append(key, 4);
  for (size_t i = 0; i < n; ++i) out.push_back(masked ? static_cast<char>(payload[i] ^ key[i & 3]) : payload[i]);
  return out;
}

std::vector<Inbound> parse(const std::string& bytes, size_t max = 1 << 20, bool bytewise = false) {
  Reader reader(max);
  std::vector<Inbound> out;
  if (!bytewise) {
    reader.feed(bytes, out);
  } else {
    for (char c : bytes) reader.feed(std::string_view(&c, 1), out);
  }
  return out;
}

uint16_t error_of(const std::string& bytes, size_t max = 1 << 20) {
  auto out = parse(bytes, max);
  return !out.empty() && out.back().kind == Kind::error ? out.back().code : 0;
}

}  // namespace

TEST(text_message_whole_and_bytewise) {
  const std::string two = client(0x81, R"({"type":"ping"})") + client(0x82, std::string("\0\1", 2));
  for (bool bytewise : {false, true}) {
    auto out = parse(two, 1 << 20, bytewise);
    CHECK(out.size() == 2);
    CHECK(out[0].kind == Kind::message && !out[0].binary && out[0].payload == R"({"type":"ping"})");
    CHECK(out[1].kind == Kind::message && out[1].binary && out[1].payload == std::string("\0\1", 2));
  }
}

TEST(lengths_16_and_64_bit) {
  const std::string mid(300, 'a'), big(70000, 'b');
  auto out = parse(client(0x81, mid) + client(0x81, big));
  CHECK(out.size() == 2 && out[0].payload == mid && out[1].payload == big);
}

TEST(fragments_joined_with_control_frames_between) {
  auto out = parse(client(0x01, "hel") + client(0x89, "p") + client(0x00, "lo ") + client(0x80, "you"));
  CHECK(out.size() == 2);
  CHECK(out[0].kind == Kind::ping && out[0].payload == "p");
  CHECK(out[1].kind == Kind::message && out[1].payload == "hello you");
}

TEST(close_with_and_without_code) {
  std::string payload = "\x03\xe9" "bye";  // 1001
  auto out = parse(client(0x88, payload) + client(0x81, "after the close"));
  CHECK(out.size() == 1 && out[0].kind == Kind::close && out[0].code == 1001 && out[0].payload == "bye");
  out = parse(client(0x88, ""));
  CHECK(out.size() == 1 && out[0].kind == Kind::close && out[0].code == kNormal);
}

TEST(protocol_errors) {
  CHECK(error_of(client(0x81, "x", /*masked=*/false)) == kProtocolError);
  CHECK(error_of(client(0xC1, "x")) == kProtocolError);                  // RSV1, no deflate
  CHECK(error_of(client(0x83, "x")) == kProtocolError);                  // reserved opcode
  CHECK(error_of(client(0x80, "x")) == kProtocolError);                  // continuation first
  CHECK(error_of(client(0x01, "a") + client(0x81, "b")) == kProtocolError);  // new message mid-way
  CHECK(error_of(client(0x09, "p")) == kProtocolError);                  // fragmented ping
  CHECK(error_of(client(0x89, std::string(126, 'p'))) == kProtocolError);  // control > 125
  CHECK(error_of(client(0x88, "\x03")) == kProtocolError);               // close of 1 byte
  CHECK(error_of(client(0x88, "\x03\xec")) == kProtocolError);           // close code 1004
}

TEST(invalid_utf8_and_too_big) {
  CHECK(error_of(client(0x81, "\xc3\x28")) == kInvalidData);
  CHECK(error_of(client(0x81, "\xed\xa0\x80")) == kInvalidData);  // a surrogate
  CHECK(error_of(client(0x01, "\xe2\x82") + client(0x80, "\xac")) == 0);  // split sign
  CHECK(error_of(client(0x82, "\xc3\x28")) == 0);                   // binary: not checked
  CHECK(error_of(client(0x81, std::string(101, 'a')), 100) == kTooBig);
  CHECK(error_of(client(0x01, std::string(60, 'a')) + client(0x80, std::string(60, 'a')), 100) == kTooBig);
  // Seen from the header alone: nothing of a 1 GB frame is buffered.
  std::string header = client(0x81, "").substr(0, 1);
  header += "\xff";
  for (int k = 0; k < 8; ++k) header.push_back(k == 4 ? '\x40' : '\0');
  CHECK(error_of(header, 1 << 20) == kTooBig);
}

TEST(nothing_after_an_error_and_little_buffered) {
  Reader reader(1 << 20);
  std::vector<Inbound> out;
  reader.feed(client(0x81, "x", false) + client(0x81, "y"), out);
  CHECK(out.size() == 1 && reader.done());
  reader.feed(client(0x81, "z"), out);
  CHECK(out.size() == 1);
  Reader idle(1 << 20);
  idle.feed(client(0x81, "abc").substr(0, 4), out);
  CHECK(idle.buffered() == 4 && !idle.done());
}

TEST(server_frames) {
  CHECK(frame(Opcode::pong, "p") == std::string("\x8a\x01p"));
  CHECK(close_frame(1008) == std::string("\x88\x02\x03\xf0"));
  const std::string big = frame(Opcode::text, std::string(300, 'a'));
  CHECK(big.size() == 304 && static_cast<uint8_t>(big[1]) == 126 && big[2] == 1 && big[3] == 44);
  CHECK(valid_utf8("h\xc3\xa9llo \xf0\x9f\x98\x80") && !valid_utf8("\xf4\x90\x80\x80"));
}

int main() { return fanwire_test::run_all(); }
