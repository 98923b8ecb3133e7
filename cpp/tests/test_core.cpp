// Unit tests of the core's semantics: encoding, replay, resume, gaps, policies, closing.
#include <string>
#include <vector>

#include "check.hpp"
#include "fanwire/broker.hpp"

using namespace fanwire;

namespace {

std::vector<std::string> ids_of(Subscriber& sub, uint64_t* dropped = nullptr) {
  std::vector<MessagePtr> got;
  TakeResult r = sub.take(got, 1 << 20);
  if (dropped) *dropped = r.dropped;
  std::vector<std::string> ids;
  for (auto& m : got) ids.emplace_back(m->id());
  return ids;
}

SubscribeOptions opts(size_t queue = 1000, Policy policy = Policy::drop_oldest) {
  SubscribeOptions o;
  o.waiter = 7;
  o.queue_size = queue;
  o.policy = policy;
  return o;
}

}  // namespace

TEST(encodes_sse_and_ws_once) {
  Broker b(10, 42);
  b.create_topic("t");
  auto sub = b.subscribe("t", opts());
  auto r = b.publish("t", R"({"a":1})", "tick");
  CHECK(r.id == "42-1");
  CHECK(r.subscribers == 1);
  std::vector<MessagePtr> got;
  sub->take(got, 10);
  CHECK(got.size() == 1);
  const std::string sse(got[0]->sse());
  CHECK(sse.rfind("id: 42-1\nevent: tick\ndata: {\"topic\":\"t\",\"data\":{\"a\":1},\"ts\":", 0) == 0);
  CHECK(sse.size() > 2 && sse.substr(sse.size() - 3) == "}\n\n");
  const std::string ws(got[0]->ws());
  CHECK(ws.rfind(R"({"type":"event","topic":"t","message_id":"42-1","data":{"a":1},"ts":)", 0) == 0);
  CHECK(ws.find(R"("event":"tick"})") != std::string::npos);
}

TEST(default_event_is_message) {
  Broker b(10, 1);
  b.create_topic("t");
  auto sub = b.subscribe("t", opts());
  b.publish("t", "1", "");
  std::vector<MessagePtr> got;
  sub->take(got, 10);
  CHECK(std::string(got[0]->sse()).find("event: message\n") != std::string::npos);
  CHECK(std::string(got[0]->ws()).find(",\"event\":") == std::string::npos);
}

TEST(unknown_topic_throws) {
  Broker b(10);
  bool thrown = false;
  try {
    b.publish("nope", "1", "");
  } catch (const TopicNotFound&) {
    thrown = true;
  }
  CHECK(thrown);
}

TEST(replay_last_n_then_live) {
  Broker b(5, 9);
  b.create_topic("t");
  for (int i = 0; i < 8; ++i) b.publish("t", "1", "");
  SubscribeOptions o = opts();
  o.last_n = 3;
  auto sub = b.subscribe("t", o);
  b.publish("t", "1", "");
  auto ids = ids_of(*sub);
  CHECK((ids == std::vector<std::string>{"9-6", "9-7", "9-8", "9-9"}));
}

TEST(resume_after_id_without_gap) {
  Broker b(5, 9);
  b.create_topic("t");
  for (int i = 0; i < 4; ++i) b.publish("t", "1", "");
  SubscribeOptions o = opts();
  o.since = "9-2";
  auto sub = b.subscribe("t", o);
  CHECK(!sub->gap());
  auto ids = ids_of(*sub);
  CHECK((ids == std::vector<std::string>{"9-3", "9-4"}));
}

TEST(resume_too_old_reports_gap) {
  Broker b(3, 9);
  b.create_topic("t");
  for (int i = 0; i < 6; ++i) b.publish("t", "1", "");
  SubscribeOptions o = opts();
  o.since = "9-1";
  auto sub = b.subscribe("t", o);
  CHECK(sub->gap());
  CHECK(sub->first_available() == std::optional<std::string>("9-4"));
  CHECK((ids_of(*sub) == std::vector<std::string>{"9-4", "9-5", "9-6"}));
}

TEST(resume_foreign_or_garbage_id_reports_gap) {
  Broker b(3, 9);
  b.create_topic("t");
  b.publish("t", "1", "");
  for (const char* bad : {"8-1", "garbage", "9-999", "", "-", "9-", "99999999999999999999999-1"}) {
    SubscribeOptions o = opts();
    o.since = bad;
    auto sub = b.subscribe("t", o);
    CHECK(sub->gap());
    CHECK(ids_of(*sub).size() == 1);
  }
}

TEST(drop_oldest_counts_exactly) {
  Broker b(100, 1);
  b.create_topic("t");
  auto sub = b.subscribe("t", opts(10));
  for (int i = 0; i < 25; ++i) b.publish("t", "1", "");
  uint64_t dropped = 0;
  auto ids = ids_of(*sub, &dropped);
  CHECK(dropped == 15);
  CHECK(ids.size() == 10);
  CHECK(ids.front() == "1-16");
  CHECK(sub->dropped() == 15);
  auto stats = b.topic_stats();
  CHECK(stats.size() == 1 && stats[0].dropped == 15);
}

TEST(disconnect_policy_closes_slow_consumer) {
  Broker b(100, 1);
  b.create_topic("t");
  auto sub = b.subscribe("t", opts(5, Policy::disconnect));
  for (int i = 0; i < 6; ++i) b.publish("t", "1", "");
  CHECK(sub->close_reason() == CloseReason::slow_consumer);
  std::vector<uint64_t> tokens;
  b.drain(tokens);
  CHECK(tokens.size() == 1 && tokens[0] == (7 | Notifier::kClosingBit));
  CHECK(ids_of(*sub).empty());
  CHECK(b.publish("t", "1", "").subscribers == 0);
}

TEST(replay_larger_than_queue_is_not_a_drop) {
  Broker b(100, 1);
  b.create_topic("t");
  for (int i = 0; i < 50; ++i) b.publish("t", "1", "");
  SubscribeOptions o = opts(5, Policy::disconnect);
  o.last_n = 50;
  auto sub = b.subscribe("t", o);
  b.publish("t", "1", "");  // the replay filled the capacity (50): one more overflows
  CHECK(sub->close_reason() == CloseReason::slow_consumer);
  o.last_n = 40;
  auto sub2 = b.subscribe("t", o);
  CHECK(ids_of(*sub2).size() == 40);
  for (int i = 0; i < 5; ++i) b.publish("t", "1", "");
  CHECK(sub2->close_reason() == CloseReason::none);
}

TEST(arm_parks_and_publish_wakes_once) {
  Broker b(10, 1);
  b.create_topic("t");
  auto sub = b.subscribe("t", opts());
  CHECK(sub->arm());
  auto r = b.publish("t", "1", "", {}, /*from_loop=*/true);
  CHECK(r.must_drain);
  b.publish("t", "1", "", {}, true);  // not parked any more: no second wake-up
  std::vector<uint64_t> tokens;
  b.drain(tokens);
  CHECK(tokens == std::vector<uint64_t>{7});
  CHECK(!sub->arm());  // two messages are ready
}

TEST(topic_delete_tells_subscribers_after_pending) {
  Broker b(10, 1);
  b.create_topic("t");
  auto sub = b.subscribe("t", opts());
  b.publish("t", "1", "");
  CHECK(b.delete_topic("t"));
  CHECK(!b.delete_topic("t"));
  CHECK(sub->close_reason() == CloseReason::topic_deleted);
  CHECK(sub->pending() == 1);
  CHECK(ids_of(*sub).size() == 1);
  CHECK(sub->pending() == 0);
}

TEST(shutdown_closes_and_wakes_everyone) {
  Broker b(10, 1);
  b.create_topic("a");
  b.create_topic("b");
  auto s1 = b.subscribe("a", opts());
  auto s2 = b.subscribe("b", opts());
  b.shutdown();
  CHECK(s1->close_reason() == CloseReason::shutdown);
  CHECK(s2->close_reason() == CloseReason::shutdown);
  std::vector<uint64_t> tokens;
  b.drain(tokens);
  CHECK(tokens.size() == 2);
  CHECK(b.topic_count() == 0);
}

TEST(external_ids_resume) {
  Broker b(10, 0, /*external_ids=*/true);
  b.create_topic("t");
  b.publish("t", "1", "", "1700000000000-0");
  b.publish("t", "1", "", "1700000000001-0");
  SubscribeOptions o = opts();
  o.since = "1700000000000-0";
  auto sub = b.subscribe("t", o);
  CHECK(!sub->gap());
  CHECK((ids_of(*sub) == std::vector<std::string>{"1700000000001-0"}));
}

TEST(skip_through_never_delivers_twice) {
  Broker b(10, 0, true);
  b.create_topic("t");
  auto sub = b.subscribe("t", opts());
  b.publish("t", "1", "", "5-0");
  b.publish("t", "1", "", "6-0");
  sub->skip_through(*MessageKey::parse("5-0"));
  b.publish("t", "1", "", "7-0");
  CHECK((ids_of(*sub) == std::vector<std::string>{"6-0", "7-0"}));
}

TEST(nothing_leaks) {
  const auto before_msgs = Message::live_count();
  const auto before_subs = Subscriber::live_count();
  {
    Broker b(10, 1);
    b.create_topic("t");
    std::vector<std::shared_ptr<Subscriber>> subs;
    for (int i = 0; i < 100; ++i) subs.push_back(b.subscribe("t", opts(3)));
    for (int i = 0; i < 50; ++i) b.publish("t", "1", "");
    subs.resize(10);
  }
  CHECK(Message::live_count() == before_msgs);
  CHECK(Subscriber::live_count() == before_subs);
}

int main() { return fanwire_test::run_all(); }
