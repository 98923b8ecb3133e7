// The native write path: Sinks on socketpairs, driven by the Writer thread, with
// publishers on other threads; run under TSan and ASan too.
#include <fcntl.h>
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
                             size_t queue = 1000, Policy policy = Policy::drop_oldest) {
  SubscribeOptions o;
  o.queue_size = queue;
  o.policy = policy;
  Sink::Options options;
  options.fd = ::dup(fd);
  options.preamble = "retry: 1000\n\n";
  options.heartbeat_seconds = 0.3;
  options.loop_waiter = 99;
  return writer.attach({broker.subscribe(topic, o)}, std::move(options));
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
  for (int i = 0; i < 200 && sink->end() == SinkEnd::none; ++i) std::this_thread::sleep_for(5ms);
  CHECK(sink->end() == SinkEnd::no_topics);
  std::vector<uint64_t> tokens;
  broker.drain(tokens);
  CHECK(tokens == std::vector<uint64_t>{99 | Notifier::kClosingBit});  // Python is told once
  sink->close();
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

int main() { return fanwire_test::run_all(); }
