// WebSocket connections the core owns (WsSink) on socketpairs, driven by the Writer
// thread: ordered output (acks before events, none after an unsubscribe's ack), pings
// answered, client messages handed to the loop, close codes; run under TSan and ASan too.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "fanwire/broker.hpp"
#include "fanwire/writer.hpp"

using namespace fanwire;
using namespace std::chrono_literals;

namespace {

struct Pair {
  int server = -1;
  int client = -1;
};

Pair socket_pair() {
  int fds[2];
  ::socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
  ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  return Pair{fds[0], fds[1]};
}

// A client frame, masked.
std::string client_frame(uint8_t first, std::string_view payload) {
  std::string out;
  out.push_back(static_cast<char>(first));
  out.push_back(static_cast<char>(0x80 | payload.size()));  // tests send < 126 bytes
  const char key[4] = {1, 2, 3, 4};
  out.append(key, 4);
  for (size_t i = 0; i < payload.size(); ++i) out.push_back(static_cast<char>(payload[i] ^ key[i & 3]));
  return out;
}

// Server frames read from `fd` (unmasked), as (opcode, payload), until `want` of them
// or the deadline; `eof` set if the server closed.
struct Frames {
  std::vector<std::pair<int, std::string>> got;
  bool eof = false;
};

Frames read_frames(int fd, size_t want, std::chrono::milliseconds limit = 5000ms) {
  Frames out;
  std::string buf;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (out.got.size() < want && std::chrono::steady_clock::now() < deadline) {
    char chunk[65536];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) buf.append(chunk, static_cast<size_t>(n));
    else if (n == 0) { out.eof = true; break; }
    else std::this_thread::sleep_for(1ms);
    while (buf.size() >= 2) {
      size_t len = static_cast<uint8_t>(buf[1]) & 0x7f, header = 2;
      if (len == 126) {
        if (buf.size() < 4) break;
        len = (static_cast<uint8_t>(buf[2]) << 8) | static_cast<uint8_t>(buf[3]);
        header = 4;
      }
      if (buf.size() < header + len) break;
      out.got.emplace_back(static_cast<uint8_t>(buf[0]) & 0x0f, buf.substr(header, len));
      buf.erase(0, header + len);
    }
  }
  return out;
}

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  return cond();
}

std::shared_ptr<WsSink> hand_over(Writer& writer, Pair& pair, double ping = 0, double timeout = 20) {
  WsSink::Options options;
  options.fd = pair.server;
  options.ping_interval = ping;
  options.ping_timeout = timeout;
  options.close_grace_seconds = 2;
  options.loop_waiter = 42;
  pair.server = -1;
  return writer.attach_ws(std::move(options));
}

std::shared_ptr<Subscriber> subscribe(Broker& broker, const char* topic) {
  SubscribeOptions o;
  o.queue_size = 1000;
  return broker.subscribe(topic, o);
}

}  // namespace

TEST(ack_precedes_events_and_none_follows_unsubscribe) {
  Broker broker(1000, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = hand_over(writer, pair);
  sink->send(ws::frame(ws::Opcode::text, "connected"));
  // A publisher keeps the topic busy while the client subscribes and unsubscribes.
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    while (!stop.load()) {
      broker.publish("t", "1", "");
      std::this_thread::sleep_for(100us);
    }
  });
  auto sub = subscribe(broker, "t");
  CHECK(sink->subscribe(sub, ws::frame(ws::Opcode::text, "ack-sub")));
  std::this_thread::sleep_for(50ms);
  CHECK(sink->unsubscribe(*sub, ws::frame(ws::Opcode::text, "ack-unsub")));
  std::this_thread::sleep_for(50ms);
  stop.store(true);
  publisher.join();
  sink->send(ws::frame(ws::Opcode::text, "last"));
  Frames frames = read_frames(pair.client, 100000, 1000ms);
  std::vector<std::string> texts;
  for (auto& [op, payload] : frames.got) texts.push_back(payload);
  CHECK(texts.size() >= 4 && texts.front() == "connected" && texts[1] == "ack-sub");
  size_t events = 0, after_unsub = 0;
  bool unsubscribed = false;
  for (size_t i = 2; i < texts.size(); ++i) {
    if (texts[i] == "ack-unsub") unsubscribed = true;
    else if (texts[i] != "last") (unsubscribed ? after_unsub : events) += 1;
  }
  CHECK(unsubscribed && events > 0 && after_unsub == 0 && texts.back() == "last");
  ::close(pair.client);
}

TEST(ping_answered_messages_to_the_loop_close_echoed) {
  Broker broker(100, 5);
  Writer writer(broker.notifier(), 0, broker.inbox());
  Pair pair = socket_pair();
  auto sink = hand_over(writer, pair);
  const std::string in = client_frame(0x81, R"({"type":"ping"})") + client_frame(0x89, "hi") +
                         client_frame(0x82, "b");
  CHECK(::write(pair.client, in.data(), in.size()) == static_cast<ssize_t>(in.size()));
  Frames pong = read_frames(pair.client, 1);
  CHECK(pong.got.size() == 1 && pong.got[0].first == 0xA && pong.got[0].second == "hi");
  std::vector<std::string> got;
  CHECK(wait_for([&] {
    for (auto& m : sink->receive()) got.push_back(m);
    return got.size() == 2;
  }));
  CHECK(got.size() == 2 && got[0] == R"({"type":"ping"})" && got[1] == "b");
  std::vector<uint64_t> tokens;  // the loop was woken for them, through the inbox
  CHECK(wait_for([&] { broker.drain_inbox(tokens); return !tokens.empty(); }));
  CHECK(!tokens.empty() && tokens[0] == 42);
  tokens.clear();
  broker.drain(tokens);  // not through the subscribers' notifier (rate-limited)
  CHECK(tokens.empty());
  const std::string bye = client_frame(0x88, std::string("\x03\xe8", 2));
  CHECK(::write(pair.client, bye.data(), bye.size()) == static_cast<ssize_t>(bye.size()));
  Frames close = read_frames(pair.client, 2);
  CHECK(!close.got.empty() && close.got[0].first == 0x8 && close.got[0].second == std::string("\x03\xe8", 2));
  ::shutdown(pair.client, SHUT_WR);
  CHECK(wait_for([&] { return sink->done(); }));
  CHECK(wait_for([&] { broker.drain(tokens); return !tokens.empty() && (tokens.back() & Notifier::kClosingBit); }));
  ::close(pair.client);
}

TEST(protocol_error_closes_with_its_code) {
  Broker broker(100, 5);
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = hand_over(writer, pair);
  const std::string unmasked = "\x81\x01x";
  CHECK(::write(pair.client, unmasked.data(), unmasked.size()) == 3);
  Frames close = read_frames(pair.client, 1);
  CHECK(close.got.size() == 1 && close.got[0].first == 0x8 && close.got[0].second == std::string("\x03\xea", 2));
  CHECK(sink->close_code() == 1002);
  ::close(pair.client);
  CHECK(wait_for([&] { return sink->done(); }));
}

TEST(shutdown_without_subscribers_and_slow_consumer_close_codes) {
  Broker broker(100, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair idle = socket_pair();
  auto sink = hand_over(writer, idle);
  CHECK(sink->shutdown());
  Frames frames = read_frames(idle.client, 2);
  CHECK(frames.got.size() == 2 && frames.got[0].second.find("shutdown") != std::string::npos);
  CHECK(frames.got.size() == 2 && frames.got[1].first == 0x8 && frames.got[1].second == std::string("\x03\xe9", 2));
  ::close(idle.client);

  Pair slow = socket_pair();
  auto sink2 = hand_over(writer, slow);
  SubscribeOptions o;
  o.queue_size = 2;
  o.policy = Policy::disconnect;
  CHECK(sink2->subscribe(broker.subscribe("t", o), ws::frame(ws::Opcode::text, "ack")));
  const std::string pad(60000, 'x');  // never read for a while: the socket fills
  for (int i = 0; i < 200; ++i) broker.publish("t", "\"" + pad + "\"", "");
  CHECK(wait_for([&] { return sink2->end() == StreamEnd::slow_consumer; }));
  Frames rest = read_frames(slow.client, 1000000, 1500ms);
  CHECK(!rest.got.empty() && rest.got.back().first == 0x8 && rest.got.back().second == std::string("\x03\xf0", 2));
  ::close(slow.client);
  CHECK(wait_for([&] { return sink2->done(); }));
}

TEST(keepalive_pings_and_a_silent_peer_closed_1011) {
  Broker broker(100, 5);
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = hand_over(writer, pair, /*ping=*/0.05, /*timeout=*/0.1);
  Frames ping = read_frames(pair.client, 1);
  CHECK(ping.got.size() == 1 && ping.got[0].first == 0x9);
  // Never answered: closed 1011 once the timeout passed, then closed after the grace.
  Frames close = read_frames(pair.client, 1);
  CHECK(close.got.size() == 1 && close.got[0].first == 0x8 &&
        close.got[0].second == std::string("\x03\xf3", 2));
  CHECK(wait_for([&] { return sink->done(); }));
  ::close(pair.client);
}

TEST(a_flooding_client_is_not_read_past_the_inbox_limit) {
  Broker broker(100, 5);
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = hand_over(writer, pair);
  const std::string one = client_frame(0x81, std::string(100, 'm'));
  size_t sent = 0;  // until the kernel takes no more: the core stopped reading
  for (int idle = 0; idle < 200 && sent < (64u << 20);) {
    const ssize_t n = ::write(pair.client, one.data(), one.size());
    if (n == static_cast<ssize_t>(one.size())) sent += one.size(), idle = 0;
    else ++idle, std::this_thread::sleep_for(1ms);
  }
  CHECK(sent < (64u << 20));
  const size_t first = sink->receive().size();
  CHECK(first > 0 && first * one.size() < (4u << 20));  // about the inbox limit, not all
  size_t more = 0;  // once drained, it reads again
  CHECK(wait_for([&] { more += sink->receive().size(); return more > 0; }));
  ::close(pair.client);
  CHECK(wait_for([&] { return sink->done(); }));
}

int main() { return fanwire_test::run_all(); }
