// Keyed conflation and the last-value cache (PROTOCOL.md, "Keyed conflation"): unit tests
// and a stress test of publishers racing conflating cursors (run under TSan and ASan by
// tests/test_cpp.py).
#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "fanwire/broker.hpp"
#include "fanwire/conflate.hpp"
#include "fanwire/stream.hpp"

using namespace fanwire;

namespace {

SubscribeOptions opts(Policy policy = Policy::drop_oldest, size_t queue = 1000) {
  SubscribeOptions o;
  o.waiter = 7;
  o.policy = policy;
  o.queue_size = queue;
  return o;
}

std::vector<std::string> ids(Subscriber& sub, TakeResult* result = nullptr) {
  std::vector<MessagePtr> got;
  TakeResult r = sub.take(got, 1 << 20);
  if (result) *result = r;
  std::vector<std::string> out;
  for (auto& m : got) out.emplace_back(m->id());
  return out;
}

PublishResult pub(Broker& b, std::string_view topic, std::string_view data) {
  return b.publish(topic, data, "");
}

std::string price(const char* symbol, int v) {
  return std::string(R"({"symbol":")") + symbol + R"(","v":)" + std::to_string(v) + "}";
}

}  // namespace

TEST(top_level_field_finds_the_raw_value) {
  CHECK(top_level_field(R"({"symbol":"AAPL","v":1})", "symbol") == R"("AAPL")");
  CHECK(top_level_field(R"({"v":1,"symbol":7})", "symbol") == "7");
  CHECK(top_level_field(R"({"a":{"symbol":"x"},"b":[1,"]}"],"symbol":"y"})", "symbol") ==
        R"("y")");
  CHECK(top_level_field(R"({"s\"ymbol":1,"symbol":"q\"}"})", "symbol") == R"("q\"}")");
  CHECK(!top_level_field(R"({"a":{"symbol":"x"}})", "symbol"));
  CHECK(!top_level_field(R"(["symbol","x"])", "symbol"));
  CHECK(!top_level_field(R"("symbol")", "symbol"));
  CHECK(!top_level_field(R"({"symbol")", "symbol"));
  CHECK(!top_level_field("", "symbol"));
  CHECK(top_level_field(R"({"symbol":null})", "symbol") == "null");
}

TEST(a_lagging_cursor_gets_the_latest_of_each_key_and_every_keyless_message) {
  Broker b(100, 5);
  b.create_topic("px", 0, 0, "symbol");
  auto slow = b.subscribe("px", opts(Policy::conflate));
  auto fast = b.subscribe("px", opts());
  pub(b, "px", price("a", 1));  // 5-1
  pub(b, "px", price("b", 1));  // 5-2
  pub(b, "px", R"({"v":0})");   // 5-3, no key: never skipped
  pub(b, "px", price("a", 2));  // 5-4
  pub(b, "px", price("b", 2));  // 5-5
  pub(b, "px", price("a", 3));  // 5-6
  TakeResult r;
  CHECK((ids(*slow, &r) == std::vector<std::string>{"5-3", "5-5", "5-6"}));
  CHECK(r.conflated == 3 && r.dropped == 0);
  CHECK(ids(*fast).size() == 6);
  // Caught up: the next one comes as it is, with no notice.
  pub(b, "px", price("a", 4));
  CHECK((ids(*slow, &r) == std::vector<std::string>{"5-7"}));
  CHECK(r.conflated == 0);
}

TEST(the_stream_tells_the_conflated_count_before_the_messages) {
  Broker b(100, 5);
  b.create_topic("px", 0, 0, "symbol");
  Stream ws(Encoding::ws_text);
  ws.add(b.subscribe("px", opts(Policy::conflate)));
  Stream sse(Encoding::sse);
  sse.add(b.subscribe("px", opts(Policy::conflate)));
  for (int v = 0; v < 5; ++v) pub(b, "px", price("a", v));
  Taken taken;
  ws.take(taken);
  CHECK(taken.pieces().size() == 2);
  CHECK(taken.bytes(taken.pieces()[0]) ==
        R"({"type":"info","message":"messages_conflated","topic":"px","conflated":4})");
  CHECK(taken.pieces()[1].message && taken.pieces()[1].message->id() == "5-5");
  Taken sse_taken;
  sse.take(sse_taken);
  CHECK(sse_taken.bytes(sse_taken.pieces()[0]) ==
        "event: conflated\ndata: {\"topic\":\"px\",\"conflated\":4}\n\n");
}

TEST(other_policies_and_topics_never_skip) {
  Broker b(100, 5);
  b.create_topic("plain");
  b.create_topic("px", 0, 0, "symbol");
  auto on_plain = b.subscribe("plain", opts(Policy::conflate));
  auto drop = b.subscribe("px", opts(Policy::drop_oldest));
  for (int v = 0; v < 4; ++v) {
    pub(b, "plain", price("a", v));
    pub(b, "px", price("a", v));
  }
  TakeResult r;
  CHECK(ids(*on_plain, &r).size() == 4 && r.conflated == 0);
  CHECK(ids(*drop, &r).size() == 4 && r.conflated == 0);
}

TEST(a_cache_topic_sends_the_latest_of_every_key_then_live_ones) {
  Broker b(100, 5);
  b.create_topic("px", 0, 0, "symbol", true);
  pub(b, "px", price("a", 1));  // 5-1
  pub(b, "px", price("b", 1));  // 5-2
  pub(b, "px", R"({"v":0})");   // 5-3: keyless, not part of the cache
  pub(b, "px", price("a", 2));  // 5-4
  pub(b, "px", price("c", 1));  // 5-5
  auto late = b.subscribe("px", opts());
  CHECK((ids(*late) == std::vector<std::string>{"5-2", "5-4", "5-5"}));
  pub(b, "px", price("a", 3));
  pub(b, "px", R"({"v":0})");
  CHECK((ids(*late) == std::vector<std::string>{"5-6", "5-7"}));
  // A key superseded after the subscribe, before the cache was read: the newer only.
  auto later = b.subscribe("px", opts());
  pub(b, "px", price("b", 2));  // 5-8 supersedes 5-2
  CHECK((ids(*later) == std::vector<std::string>{"5-5", "5-6", "5-8"}));
  // last_n and since are replays as usual.
  SubscribeOptions replay = opts();
  replay.last_n = 2;
  auto replayer = b.subscribe("px", replay);
  CHECK((ids(*replayer) == std::vector<std::string>{"5-7", "5-8"}));
}

TEST(the_cache_holds_only_what_the_retention_holds) {
  Broker b(4, 5);
  b.create_topic("px", 0, 0, "symbol", true);
  for (int k = 0; k < 50; ++k) pub(b, "px", price(std::to_string(k).c_str(), 1));
  auto late = b.subscribe("px", opts());
  CHECK((ids(*late) == std::vector<std::string>{"5-47", "5-48", "5-49", "5-50"}));
}

TEST(a_conflating_cursor_past_the_retention_loses_only_the_unsuperseded) {
  Broker b(4, 5);
  b.create_topic("px", 0, 0, "symbol");
  auto slow = b.subscribe("px", opts(Policy::conflate));
  pub(b, "px", price("x", 1));  // 5-1: never superseded, evicted unread: a drop
  for (int v = 0; v < 8; ++v) pub(b, "px", price("a", v));  // 5-2 .. 5-9
  TakeResult r;
  CHECK((ids(*slow, &r) == std::vector<std::string>{"5-9"}));
  CHECK(r.dropped == 1 && r.conflated == 7);
}

TEST(stress_publishers_race_conflating_cursors) {
  constexpr int kThreads = 3, kKeys = 10, kVersions = 3000;
  Broker broker(64, 5);
  broker.create_topic("px", 0, 0, "symbol");
  struct Reader {
    std::shared_ptr<Subscriber> sub;
    std::map<std::string, int> last;  // key -> last version received
    uint64_t received = 0, conflated = 0, dropped = 0;
    bool regressed = false;
  };
  std::vector<Reader> readers(3);
  readers[0].sub = broker.subscribe("px", opts(Policy::conflate));
  readers[1].sub = broker.subscribe("px", opts(Policy::conflate));
  readers[2].sub = broker.subscribe("px", opts(Policy::drop_oldest, 64));
  std::atomic<int> running{kThreads + 1};  // the publishers and the final round
  auto read = [&](Reader& r, bool slow) {
    std::vector<MessagePtr> got;
    auto once = [&] {
      got.clear();
      TakeResult t = r.sub->take(got, slow ? 7 : 1 << 20);
      r.conflated += t.conflated;
      r.dropped += t.dropped;
      r.received += got.size();
      for (auto& m : got) {
        // The SSE frame holds the data: {"symbol":"t-k","v":n}.
        const std::string_view sse = m->sse();
        const auto at = sse.find(R"("data":{)");
        const std::string_view data = sse.substr(at + 7);
        const std::string key(*top_level_field(data, "symbol"));
        const int v = std::stoi(std::string(*top_level_field(data, "v")));
        auto it = r.last.find(key);
        if (it != r.last.end() && it->second >= v) r.regressed = true;
        r.last[key] = v;
      }
    };
    while (running.load() > 0) {
      once();
      if (slow) std::this_thread::yield();
    }
    for (int i = 0; i < 1000 && r.sub->pending() > 0; ++i) once();
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int v = 1; v <= kVersions; ++v) {
        const std::string key = std::to_string(t) + "-" + std::to_string(v % kKeys);
        pub(broker, "px", R"({"symbol":")" + key + R"(","v":)" + std::to_string(v) + "}");
      }
      running.fetch_sub(1);
    });
  }
  std::thread r0([&] { read(readers[0], true); });
  std::thread r1([&] { read(readers[1], false); });
  std::thread r2([&] { read(readers[2], false); });
  for (auto& t : threads) t.join();
  // A final round, within the retention: every reader must end with these values.
  for (int t = 0; t < kThreads; ++t)
    for (int k = 0; k < kKeys; ++k)
      pub(broker, "px",
          R"({"symbol":")" + std::to_string(t) + "-" + std::to_string(k) + R"(","v":)" +
              std::to_string(kVersions + 1) + "}");
  running.fetch_sub(1);
  r0.join();
  r1.join();
  r2.join();
  const uint64_t total = uint64_t{kThreads} * (kVersions + kKeys);
  for (auto& r : readers) {
    CHECK(!r.regressed);
    CHECK(r.received + r.conflated + r.dropped == total);  // every message accounted for
  }
  for (int i = 0; i < 3; ++i) {  // the latest value of every key, whatever was lost
    CHECK(readers[i].last.size() == size_t{kThreads} * kKeys);
    for (auto& [key, v] : readers[i].last) CHECK(v == kVersions + 1);
  }
  CHECK(readers[2].conflated == 0);
}

int main() { return fanwire_test::run_all(); }
