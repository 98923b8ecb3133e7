// The native write path: Sinks on socketpairs, driven by the Writer thread, with
// publishers on other threads; run under TSan and ASan too.
#include <fcntl.h>
#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
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

// Reads from `fd` until `needle` shows up (or the deadline); returns what was read.
std::string read_until_found(int fd, const std::string& needle) {
  return read_until(fd, [&](const std::string& t) { return t.find(needle) != std::string::npos; });
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

// Waits (2 s at most) for the stream to end; how it ended.
SinkEnd wait_end(const Sink& sink) {
  for (int i = 0; i < 400 && sink.end() == SinkEnd::none; ++i) std::this_thread::sleep_for(5ms);
  return sink.end();
}

// Publishes `n` messages of 4 KB to "t": more than a socket holds for a client that
// never reads.
void flood(Broker& broker, int n = 400) {
  const std::string pad = "\"" + std::string(4000, 'x') + "\"";
  for (int i = 0; i < n; ++i) broker.publish("t", pad, "");
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

// What most tests start from: a broker (ids 5-N) with topic "t", its Writer and one
// socket pair. The test's own descriptors are closed at the end (one it closes itself is
// set to -1 first, see leave).
struct Rig {
  Broker broker;
  Writer writer;
  Pair pair = socket_pair();

  explicit Rig(size_t retention = 100) : broker(retention, 5), writer(broker.notifier()) {
    broker.create_topic("t");
  }
  ~Rig() {
    for (int fd : {pair.server, pair.client})
      if (fd >= 0) ::close(fd);
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  // The client leaves: it closes its end.
  void leave() {
    ::close(pair.client);
    pair.client = -1;
  }
};

// A stream with bytes stuck for a client that never reads, ended by the shutdown and
// kept by its close grace (600 s).
std::shared_ptr<Sink> stuck_at_shutdown(Rig& rig) {
  auto sink = hand_over(rig.writer, rig.broker, rig.pair, 1000, Policy::drop_oldest, 60, 600);
  flood(rig.broker);
  std::this_thread::sleep_for(50ms);
  rig.broker.shutdown();
  CHECK(wait_end(*sink) == SinkEnd::shutdown);
  CHECK(!sink->done());
  return sink;
}

}  // namespace

TEST(writes_chunks_in_order_with_heartbeat_and_deletion) {
  Rig rig;
  auto sink = attach(rig.writer, rig.broker, "t", rig.pair.server);
  for (int i = 0; i < 50; ++i) rig.broker.publish("t", std::to_string(i), "");
  std::string text = read_until(rig.pair.client, [](const std::string& t) { return count(t, "id: 5-") == 50; });
  CHECK(text.rfind("d\r\nretry: 1000\n\n\r\n", 0) == 0);  // the preamble is the first chunk
  CHECK(count(text, "id: 5-") == 50);
  CHECK(text.find("id: 5-1\n") < text.find("id: 5-50\n"));
  text = read_until_found(rig.pair.client, "heartbeat");
  CHECK(text.find("event: heartbeat\ndata: {\"ts\":") != std::string::npos);
  rig.broker.delete_topic("t");
  text = read_until_found(rig.pair.client, "topic_deleted");
  CHECK(text.find("event: topic_deleted\ndata: {\"topic\":\"t\"}") != std::string::npos);
  CHECK(wait_done(*sink));  // flushed, the last chunk out, the socket closed
  CHECK(sink->end() == SinkEnd::no_topics);
  CHECK(drained(rig.broker) == std::vector<uint64_t>{99 | Notifier::kClosingBit});  // told once
  sink->close();
  CHECK(drained(rig.broker).empty());
}

// Broker.end publishes event `end`: its frame has no id line, and the stream closes once
// each of its topics ended (one here).
TEST(end_of_the_only_topic_ends_the_stream) {
  Rig rig;
  auto sink = attach(rig.writer, rig.broker, "t", rig.pair.server);
  rig.broker.publish("t", "1", "");
  rig.broker.publish("t", "null", "end");
  std::string text = read_until_found(rig.pair.client, "event: end");
  CHECK(text.find("id: 5-1\nevent: message\n") != std::string::npos);
  // (The two frames may come in one chunk or in two.)
  CHECK(text.find("event: end\ndata: {\"topic\":\"t\",\"data\":null,") != std::string::npos);
  CHECK(text.find("id: 5-2") == std::string::npos);  // the end's id is not in its frame
  CHECK(wait_end(*sink) == SinkEnd::no_topics);
  sink->close();
}

TEST(stalled_socket_is_disconnected_under_disconnect_policy) {
  Rig rig(1000);
  auto sink = attach(rig.writer, rig.broker, "t", rig.pair.server, 50, Policy::disconnect);
  flood(rig.broker);  // never read: the socket fills
  CHECK(wait_end(*sink) == SinkEnd::slow_consumer);
  sink->close();
}

TEST(drop_oldest_reports_gap_with_exact_count) {
  Rig rig(1000);
  auto sink = attach(rig.writer, rig.broker, "t", rig.pair.server, 10);
  flood(rig.broker, 300);
  std::string text = read_until_found(rig.pair.client, "id: 5-300\n");
  // Every message is either delivered or counted in a gap notice.
  size_t dropped = 0;
  for (size_t at = text.find("\"dropped\":"); at != std::string::npos; at = text.find("\"dropped\":", at + 1))
    dropped += std::stoul(text.substr(at + 10));
  CHECK(count(text, "id: 5-") + dropped == 300);
  CHECK(dropped > 0);
  sink->close();
}

// A shared log's reader injects a gap notice, then publishes what follows the hole at
// once: the notice must sit between the two, however late the Writer gets to the sink.
TEST(injected_notice_goes_between_what_was_ready_and_what_came_after) {
  Rig rig(1000);
  auto sink = attach(rig.writer, rig.broker, "t", rig.pair.server);
  for (int i = 0; i < 20; ++i) rig.broker.publish("t", std::to_string(i), "");
  sink->inject("event: gap\ndata: {\"topic\":\"t\",\"first_available\":\"5-21\"}\n\n");
  for (int i = 20; i < 500; ++i) rig.broker.publish("t", std::to_string(i), "");
  std::string text = read_until_found(rig.pair.client, "id: 5-500\n");
  const size_t gap = text.find("event: gap");
  CHECK(count(text, "id: 5-") == 500);
  CHECK(gap != std::string::npos);
  CHECK(text.find("id: 5-20\n") < gap);
  CHECK(gap < text.find("id: 5-21\n"));
  sink->close();
}

TEST(many_sinks_publishers_and_shutdown_race) {
  Broker broker(256);
  broker.create_topic("a");
  broker.create_topic("b");
  Writer writer(broker.notifier(), 3);  // lanes on three threads, whatever the CPUs
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

// Several lanes: the connections are spread over them, and each still gets every message
// of its topic in id order.
TEST(lanes_each_keep_their_streams_in_order) {
  Broker broker(1000, 5);
  broker.create_topic("t");
  Writer writer(broker.notifier(), 3);
  CHECK(writer.thread_count() == 3);
  std::vector<Pair> pairs;
  std::vector<std::shared_ptr<Sink>> sinks;
  for (int i = 0; i < 6; ++i) {
    pairs.push_back(socket_pair());
    sinks.push_back(attach(writer, broker, "t", pairs.back().server));
  }
  CHECK(writer.sink_count() == 6);
  std::thread publisher([&] {
    for (int i = 0; i < 300; ++i) broker.publish("t", std::to_string(i), "");
  });
  publisher.join();
  for (auto& pair : pairs) {
    const std::string text =
        read_until(pair.client, [](const std::string& t) { return count(t, "id: 5-") == 300; });
    CHECK(count(text, "id: 5-") == 300);
    size_t at = 0;
    bool ordered = true;
    for (int i = 1; i <= 300; ++i) {
      const size_t next = text.find("id: 5-" + std::to_string(i) + "\n", at);
      ordered &= next != std::string::npos;
      at = next == std::string::npos ? at : next;
    }
    CHECK(ordered);
  }
  for (auto& s : sinks) s->close();
  for (auto& pair : pairs) {
    ::close(pair.server);
    ::close(pair.client);
  }
}

TEST(one_lane_per_cpu_but_one_by_default) {
  Broker broker(10, 5);
  Writer writer(broker.notifier());
  const size_t cpus = std::max(1u, std::thread::hardware_concurrency());
  CHECK(writer.thread_count() == std::clamp<size_t>(cpus - 1, 1, Writer::kMaxAutoThreads));
  CHECK(writer.thread_count() == Writer::auto_threads());
}

// The read side: a client that leaves is seen at once, with nothing published.
TEST(client_leaving_is_seen_without_traffic) {
  Rig rig;
  auto sink = hand_over(rig.writer, rig.broker, rig.pair);
  read_until_found(rig.pair.client, "retry:");
  CHECK(rig.broker.counters().subscribers == 1);
  rig.leave();
  CHECK(wait_done(*sink));
  CHECK(sink->end() == SinkEnd::client_gone);
  CHECK(rig.broker.counters().subscribers == 0);
  CHECK(drained(rig.broker) == std::vector<uint64_t>{99 | Notifier::kClosingBit});
  CHECK(rig.writer.sink_count() == 0);
}

// A client that sends bytes (pipelined junk) stays: only end of file ends the stream.
TEST(client_bytes_are_read_and_ignored) {
  Rig rig;
  auto sink = hand_over(rig.writer, rig.broker, rig.pair);
  const std::string junk(20000, 'x');
  CHECK(::write(rig.pair.client, junk.data(), junk.size()) > 0);
  rig.broker.publish("t", "1", "");
  std::string text = read_until_found(rig.pair.client, "id: 5-1\n");
  CHECK(text.find("id: 5-1\n") != std::string::npos);
  CHECK(sink->end() == SinkEnd::none);
  sink->close();
  CHECK(wait_done(*sink));
  CHECK(drained(rig.broker).empty());  // Python closed it: nothing to tell
}

// Heartbeats come from each sink's own timer: a short interval beats often, a long one
// not at all meanwhile.
TEST(heartbeat_timer_per_sink) {
  Rig rig;  // its pair is the fast client
  Pair& fast = rig.pair;
  Pair slow = socket_pair();
  auto a = hand_over(rig.writer, rig.broker, fast, 1000, Policy::drop_oldest, 0.05);
  auto b = hand_over(rig.writer, rig.broker, slow, 1000, Policy::drop_oldest, 60);
  std::string text = read_until(fast.client, [](const std::string& t) { return count(t, "event: heartbeat") >= 4; });
  CHECK(count(text, "event: heartbeat") >= 4);
  text = read_until(slow.client, [](const std::string&) { return false; }, 100ms);
  CHECK(text.find("retry:") != std::string::npos);
  CHECK(text.find("heartbeat") == std::string::npos);
  rig.broker.shutdown();
  for (auto* pair : {&fast, &slow}) {
    text.clear();
    CHECK(read_to_eof(pair->client, text));  // shutdown notice, last chunk, closed
    CHECK(text.find("event: shutdown") != std::string::npos);
    CHECK(text.size() >= 5 && text.compare(text.size() - 5, 5, "0\r\n\r\n") == 0);
  }
  rig.leave();
  ::close(slow.client);
  CHECK(wait_done(*a) && wait_done(*b));
}

// A socket that stays full: the stream ends (slow consumer) and, past its close grace,
// the core resets the connection and tells Python.
TEST(stuck_socket_is_reset_after_close_grace) {
  Rig rig(1000);
  auto sink = hand_over(rig.writer, rig.broker, rig.pair, 50, Policy::disconnect, 60, 0.2);
  flood(rig.broker);  // never read
  CHECK(wait_done(*sink));
  CHECK(sink->end() == SinkEnd::slow_consumer);
  CHECK(!sink->flushed() || sink->done());
  CHECK(drained(rig.broker) == std::vector<uint64_t>{99 | Notifier::kClosingBit});
}

// The shutdown grace caps a long close grace.
TEST(limit_grace_caps_a_stuck_shutdown) {
  Rig rig(1000);
  auto sink = stuck_at_shutdown(rig);
  rig.writer.limit_grace(0.1);
  CHECK(wait_done(*sink));
}

// A stream that ended with bytes stuck for a client that then leaves: closed at once, not
// after its close grace.
TEST(client_leaving_an_ended_stuck_stream_frees_it_at_once) {
  Rig rig(1000);
  auto sink = stuck_at_shutdown(rig);
  rig.leave();
  CHECK(wait_done(*sink));
  CHECK(drained(rig.broker) == std::vector<uint64_t>{99 | Notifier::kClosingBit});
}

int main() { return fanwire_test::run_all(); }
