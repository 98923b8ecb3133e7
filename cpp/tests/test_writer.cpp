// The native write path: Sinks on socketpairs, driven by the Writer thread, with
// publishers on other threads; run under TSan and ASan too.
#include <fcntl.h>
#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
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
  int server = -1;  // handed (as a duplicate) to the Sink
  int client = -1;  // read by the test
};

Pair socket_pair() {
  int fds[2];
  ::socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
  ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  return Pair{fds[0], fds[1]};
}

// Reads from `fd` until `done(text)` or the deadline; returns what was read.
template <class Done>
std::string read_until(int fd, Done done, std::chrono::milliseconds limit = 5000ms) {
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  char buf[65536];
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  while (!done(text) && std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) text.append(buf, static_cast<size_t>(n));
    else std::this_thread::sleep_for(1ms);
  }
  return text;
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::shared_ptr<Sink> attach(Writer& writer, Broker& broker, const char* topic, int fd,
                             size_t queue = 1000, Policy policy = Policy::drop_oldest,
                             double heartbeat = 0.3, double close_grace = 5) {
  SubscribeOptions o;
  o.queue_size = queue;
  o.policy = policy;
  Sink::Options options;
  options.fd = ::dup(fd);
  options.preamble = "retry: 1000\n\n";
  options.heartbeat_seconds = heartbeat;
  options.close_grace_seconds = close_grace;
  options.loop_waiter = 99;
  return writer.attach({broker.subscribe(topic, o)}, std::move(options));
}

// Hands the server end over for good (as Python does): the Sink's descriptor is its only one.
std::shared_ptr<Sink> hand_over(Writer& writer, Broker& broker, Pair& pair, size_t queue = 1000,
                                Policy policy = Policy::drop_oldest, double heartbeat = 0.3,
                                double close_grace = 5) {
  auto sink = attach(writer, broker, "t", pair.server, queue, policy, heartbeat, close_grace);
  ::close(pair.server);
  pair.server = -1;
  return sink;
}

bool wait_done(const Sink& sink) {
  for (int i = 0; i < 1000 && !sink.done(); ++i) std::this_thread::sleep_for(5ms);
  return sink.done();
}

std::vector<uint64_t> drained(Broker& broker) {
  std::vector<uint64_t> tokens;
  broker.drain(tokens);
  return tokens;
}

// Reads until the peer closes (or the deadline); true on end of file.
bool read_to_eof(int fd, std::string& text) {
  const auto deadline = std::chrono::steady_clock::now() + 5000ms;
  char buf[65536];
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  while (std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) return true;
    if (n > 0) text.append(buf, static_cast<size_t>(n));
    else if (errno != EAGAIN) return false;
    else std::this_thread::sleep_for(1ms);
  }
  return false;
}

}  // namespace

TEST(writes_chunks_in_order_with_heartbeat_and_deletion) {
  Broker broker(100, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = attach(writer, broker, "t", pair.server);
  for (int i = 0; i < 50; ++i) broker.publish("t", std::to_string(i), "");
  std::string text = read_until(pair.client, [](const std::string& t) { return count(t, "id: 5-") == 50; });
  CHECK(text.rfind("d\r\nretry: 1000\n\n\r\n", 0) == 0);  // the preamble is the first chunk
  CHECK(count(text, "id: 5-") == 50);
  CHECK(text.find("id: 5-1\n") < text.find("id: 5-50\n"));
  text = read_until(pair.client, [](const std::string& t) { return t.find("heartbeat") != std::string::npos; });
  CHECK(text.find("event: heartbeat\ndata: {\"ts\":") != std::string::npos);
  broker.delete_topic("t");
  text = read_until(pair.client, [](const std::string& t) { return t.find("topic_deleted") != std::string::npos; });
  CHECK(text.find("event: topic_deleted\ndata: {\"topic\":\"t\"}") != std::string::npos);
  CHECK(wait_done(*sink));  // flushed, the last chunk out, the socket closed
  CHECK(sink->end() == SinkEnd::no_topics);
  CHECK(drained(broker) == std::vector<uint64_t>{99 | Notifier::kClosingBit});  // told once
  sink->close();
  CHECK(drained(broker).empty());
  ::close(pair.server);
  ::close(pair.client);
}

// Broker.end publishes event `end`: its frame has no id line, and the stream closes once
// each of its topics ended (one here).
TEST(end_of_the_only_topic_ends_the_stream) {
  Broker broker(100, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = attach(writer, broker, "t", pair.server);
  broker.publish("t", "1", "");
  broker.publish("t", "null", "end");
  std::string text = read_until(pair.client, [](const std::string& t) { return t.find("event: end") != std::string::npos; });
  CHECK(text.find("id: 5-1\nevent: message\n") != std::string::npos);
  // (The two frames may come in one chunk or in two.)
  CHECK(text.find("event: end\ndata: {\"topic\":\"t\",\"data\":null,") != std::string::npos);
  CHECK(text.find("id: 5-2") == std::string::npos);  // the end's id is not in its frame
  for (int i = 0; i < 200 && sink->end() == SinkEnd::none; ++i) std::this_thread::sleep_for(5ms);
  CHECK(sink->end() == SinkEnd::no_topics);
  sink->close();
  ::close(pair.server);
  ::close(pair.client);
}

TEST(stalled_socket_is_disconnected_under_disconnect_policy) {
  Broker broker(1000, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = attach(writer, broker, "t", pair.server, 50, Policy::disconnect);
  const std::string pad = "\"" + std::string(4000, 'x') + "\"";
  for (int i = 0; i < 400; ++i) broker.publish("t", pad, "");  // never read: the socket fills
  for (int i = 0; i < 400 && sink->end() == SinkEnd::none; ++i) std::this_thread::sleep_for(5ms);
  CHECK(sink->end() == SinkEnd::slow_consumer);
  sink->close();
  ::close(pair.server);
  ::close(pair.client);
}

TEST(drop_oldest_reports_gap_with_exact_count) {
  Broker broker(1000, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = attach(writer, broker, "t", pair.server, 10);
  const std::string pad = "\"" + std::string(4000, 'x') + "\"";
  for (int i = 0; i < 300; ++i) broker.publish("t", pad, "");
  std::string text = read_until(pair.client, [](const std::string& t) { return t.find("id: 5-300\n") != std::string::npos; });
  // Every message is either delivered or counted in a gap notice.
  size_t dropped = 0;
  for (size_t at = text.find("\"dropped\":"); at != std::string::npos; at = text.find("\"dropped\":", at + 1))
    dropped += std::stoul(text.substr(at + 10));
  CHECK(count(text, "id: 5-") + dropped == 300);
  CHECK(dropped > 0);
  sink->close();
  ::close(pair.server);
  ::close(pair.client);
}

// A shared log's reader injects a gap notice, then publishes what follows the hole at
// once: the notice must sit between the two, however late the Writer gets to the sink.
TEST(injected_notice_goes_between_what_was_ready_and_what_came_after) {
  Broker broker(1000, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = attach(writer, broker, "t", pair.server);
  for (int i = 0; i < 20; ++i) broker.publish("t", std::to_string(i), "");
  sink->inject("event: gap\ndata: {\"topic\":\"t\",\"first_available\":\"5-21\"}\n\n");
  for (int i = 20; i < 500; ++i) broker.publish("t", std::to_string(i), "");
  std::string text = read_until(pair.client, [](const std::string& t) { return t.find("id: 5-500\n") != std::string::npos; });
  const size_t gap = text.find("event: gap");
  CHECK(count(text, "id: 5-") == 500);
  CHECK(gap != std::string::npos);
  CHECK(text.find("id: 5-20\n") < gap);
  CHECK(gap < text.find("id: 5-21\n"));
  sink->close();
  ::close(pair.server);
  ::close(pair.client);
}

TEST(many_sinks_publishers_and_shutdown_race) {
  Broker broker(256);
  broker.create_topic("a");
  broker.create_topic("b");
  Writer writer(broker.notifier());
  std::vector<Pair> pairs;
  std::vector<std::shared_ptr<Sink>> sinks;
  for (int i = 0; i < 64; ++i) {
    pairs.push_back(socket_pair());
    sinks.push_back(attach(writer, broker, i % 2 ? "a" : "b", pairs.back().server, 256));
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int p = 0; p < 3; ++p)
    threads.emplace_back([&, p] {
      while (!stop.load()) {
        try {
          broker.publish(p % 2 ? "a" : "b", "1", "");
        } catch (const TopicNotFound&) {
        }
      }
    });
  threads.emplace_back([&] {  // readers: drain every client socket
    char buf[65536];
    while (!stop.load())
      for (auto& pair : pairs) {
        ::fcntl(pair.client, F_SETFL, ::fcntl(pair.client, F_GETFL) | O_NONBLOCK);
        while (::read(pair.client, buf, sizeof buf) > 0) {
        }
      }
  });
  std::this_thread::sleep_for(300ms);
  sinks[0]->close();  // Python closing one while the writer runs
  broker.shutdown();
  for (int i = 0; i < 400; ++i) {
    bool all = true;
    for (auto& s : sinks) all &= s->end() != SinkEnd::none;
    if (all) break;
    std::this_thread::sleep_for(5ms);
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  for (size_t i = 1; i < sinks.size(); ++i) CHECK(sinks[i]->end() == SinkEnd::shutdown);
  for (auto& s : sinks) s->close();
  for (auto& pair : pairs) {
    ::close(pair.server);
    ::close(pair.client);
  }
}

// The read side: a client that leaves is seen at once, with nothing published.
TEST(client_leaving_is_seen_without_traffic) {
  Broker broker(100, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = hand_over(writer, broker, pair);
  read_until(pair.client, [](const std::string& t) { return t.find("retry:") != std::string::npos; });
  CHECK(broker.counters().subscribers == 1);
  ::close(pair.client);
  CHECK(wait_done(*sink));
  CHECK(sink->end() == SinkEnd::client_gone);
  CHECK(broker.counters().subscribers == 0);
  CHECK(drained(broker) == std::vector<uint64_t>{99 | Notifier::kClosingBit});
  CHECK(writer.sink_count() == 0);
}

// A client that sends bytes (pipelined junk) stays: only end of file ends the stream.
TEST(client_bytes_are_read_and_ignored) {
  Broker broker(100, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = hand_over(writer, broker, pair);
  const std::string junk(20000, 'x');
  CHECK(::write(pair.client, junk.data(), junk.size()) > 0);
  broker.publish("t", "1", "");
  std::string text = read_until(pair.client, [](const std::string& t) { return t.find("id: 5-1\n") != std::string::npos; });
  CHECK(text.find("id: 5-1\n") != std::string::npos);
  CHECK(sink->end() == SinkEnd::none);
  sink->close();
  CHECK(wait_done(*sink));
  CHECK(drained(broker).empty());  // Python closed it: nothing to tell
  ::close(pair.client);
}

// Heartbeats come from each sink's own timer: a short interval beats often, a long one
// not at all meanwhile.
TEST(heartbeat_timer_per_sink) {
  Broker broker(100, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair fast = socket_pair();
  Pair slow = socket_pair();
  auto a = hand_over(writer, broker, fast, 1000, Policy::drop_oldest, 0.05);
  auto b = hand_over(writer, broker, slow, 1000, Policy::drop_oldest, 60);
  std::string text = read_until(fast.client, [](const std::string& t) { return count(t, "event: heartbeat") >= 4; });
  CHECK(count(text, "event: heartbeat") >= 4);
  text = read_until(slow.client, [](const std::string&) { return false; }, 100ms);
  CHECK(text.find("retry:") != std::string::npos);
  CHECK(text.find("heartbeat") == std::string::npos);
  broker.shutdown();
  for (auto* pair : {&fast, &slow}) {
    text.clear();
    CHECK(read_to_eof(pair->client, text));  // shutdown notice, last chunk, closed
    CHECK(text.find("event: shutdown") != std::string::npos);
    CHECK(text.size() >= 5 && text.compare(text.size() - 5, 5, "0\r\n\r\n") == 0);
    ::close(pair->client);
  }
  CHECK(wait_done(*a) && wait_done(*b));
}

// A socket that stays full: the stream ends (slow consumer) and, past its close grace,
// the core resets the connection and tells Python.
TEST(stuck_socket_is_reset_after_close_grace) {
  Broker broker(1000, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = hand_over(writer, broker, pair, 50, Policy::disconnect, 60, 0.2);
  const std::string pad = "\"" + std::string(4000, 'x') + "\"";
  for (int i = 0; i < 400; ++i) broker.publish("t", pad, "");  // never read
  CHECK(wait_done(*sink));
  CHECK(sink->end() == SinkEnd::slow_consumer);
  CHECK(!sink->flushed() || sink->done());
  CHECK(drained(broker) == std::vector<uint64_t>{99 | Notifier::kClosingBit});
  ::close(pair.client);
}

// The shutdown grace caps a long close grace.
TEST(limit_grace_caps_a_stuck_shutdown) {
  Broker broker(1000, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = hand_over(writer, broker, pair, 1000, Policy::drop_oldest, 60, 600);
  const std::string pad = "\"" + std::string(4000, 'x') + "\"";
  for (int i = 0; i < 400; ++i) broker.publish("t", pad, "");  // never read: stuck
  std::this_thread::sleep_for(50ms);
  broker.shutdown();
  for (int i = 0; i < 400 && sink->end() == SinkEnd::none; ++i) std::this_thread::sleep_for(5ms);
  CHECK(sink->end() == SinkEnd::shutdown);
  CHECK(!sink->done());  // its 600 s close grace
  writer.limit_grace(0.1);
  CHECK(wait_done(*sink));
  ::close(pair.client);
}

// A stream that ended with bytes stuck for a client that then leaves: closed at once, not
// after its close grace.
TEST(client_leaving_an_ended_stuck_stream_frees_it_at_once) {
  Broker broker(1000, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier());
  Pair pair = socket_pair();
  auto sink = hand_over(writer, broker, pair, 1000, Policy::drop_oldest, 60, 600);
  const std::string pad = "\"" + std::string(4000, 'x') + "\"";
  for (int i = 0; i < 400; ++i) broker.publish("t", pad, "");  // never read: stuck
  std::this_thread::sleep_for(50ms);
  broker.shutdown();
  for (int i = 0; i < 400 && sink->end() == SinkEnd::none; ++i) std::this_thread::sleep_for(5ms);
  CHECK(sink->end() == SinkEnd::shutdown);
  CHECK(!sink->done());
  ::close(pair.client);
  CHECK(wait_done(*sink));
  CHECK(drained(broker) == std::vector<uint64_t>{99 | Notifier::kClosingBit});
}

int main() { return fanwire_test::run_all(); }
