// Unit tests of the core's semantics: encoding, replay, resume, gaps, policies, closing.
#include <string>
#include <vector>

#include "check.hpp"
#include "fanwire/broker.hpp"
#include "fanwire/stream.hpp"

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

// One take of `stream` into `taken`: its pieces, a message as its id, a notice as "!" + its
// text.
std::vector<std::string> take_ids(Stream& stream, Taken& taken) {
  stream.take(taken);
  std::vector<std::string> out;
  for (const auto& piece : taken.pieces())
    out.push_back(piece.message ? std::string(piece.message->id())
                                : std::string("!").append(taken.bytes(piece)));
  return out;
}

std::vector<std::string> take_ids(Stream& stream) {
  Taken taken;
  return take_ids(stream, taken);
}

Stream stream_of(Broker& b, std::vector<const char*> topics, SubscribeOptions o = opts(),
                 Encoding encoding = Encoding::ws_text) {
  Stream stream(encoding);
  for (const char* topic : topics) stream.add(b.subscribe(topic, o));
  return stream;
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

// A drop_oldest cursor's bound is applied when it is read, its stats are read or it
// leaves (Topic::settle_locked), not by each publish: the window and every count must be
// what an eager drop gives, even many retentions behind.
TEST(drop_oldest_far_behind_reads_its_newest_window_and_every_drop_is_counted) {
  Broker b(50, 1);
  b.create_topic("t");
  auto sub = b.subscribe("t", opts(10));
  auto listener = b.subscribe("t", opts(10));
  for (int i = 0; i < 1000; ++i) b.publish("t", "1", "");
  CHECK(sub->pending() == 10);
  CHECK(b.topic_stats()[0].dropped == 2 * 990);  // counted before anyone reads
  CHECK(b.counters().dropped == 2 * 990);
  uint64_t dropped = 0;
  auto ids = ids_of(*sub, &dropped);
  CHECK(dropped == 990 && ids.size() == 10 && ids.front() == "1-991");
  // A presence notice after a lag: the lag is dropped first, then the notice takes its
  // place in the window (1-1092..1-1100 and the notice; 990 + 100 + 1 dropped).
  listener->set_join_leave(true);
  for (int i = 0; i < 100; ++i) b.publish("t", "1", "");
  b.notify("t", true, "{}");
  std::vector<MessagePtr> got;
  const TakeResult r = listener->take(got, 1 << 20);
  CHECK(r.dropped == 1091 && got.size() == 10);
  CHECK(got.front()->id() == "1-1092" && got.back()->id().empty());
  // Leaving, it is counted for what it owed (110 of the 120 published since its take).
  for (int i = 0; i < 20; ++i) b.publish("t", "1", "");
  sub->close();
  CHECK(sub->dropped() == 990 + 110);
  CHECK(b.topic_stats()[0].dropped == 1100 + 1091 + 10);  // and the listener's 10 owed
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

TEST(stream_merges_topics_in_id_order) {
  Broker b(10, 3);
  for (const char* t : {"a", "b", "c"}) b.create_topic(t);
  Stream stream = stream_of(b, {"a", "b", "c"});
  for (const char* t : {"b", "a", "b", "b", "c", "a"}) b.publish(t, "1", "");
  Taken taken;
  CHECK((take_ids(stream, taken) ==
         std::vector<std::string>{"3-1", "3-2", "3-3", "3-4", "3-5", "3-6"}));
  CHECK(taken.message_count() == 6);
  b.publish("c", "1", "");
  b.publish("a", "1", "");
  CHECK((take_ids(stream) == std::vector<std::string>{"3-7", "3-8"}));
  CHECK(take_ids(stream).empty());
  CHECK(stream.arm());
}

TEST(stream_replay_and_resume_over_topics_in_id_order) {
  Broker b(10, 4);
  b.create_topic("a");
  b.create_topic("b");
  for (const char* t : {"a", "b", "b", "a", "b", "a"}) b.publish(t, "1", "");
  SubscribeOptions o = opts();
  o.last_n = 2;
  Stream replay = stream_of(b, {"a", "b"}, o);
  CHECK((take_ids(replay) == std::vector<std::string>{"4-3", "4-4", "4-5", "4-6"}));
  for (int after = 0; after <= 6; ++after) {  // resume from every id: all after it, once
    SubscribeOptions r = opts();
    r.since = "4-" + std::to_string(after);
    Stream resumed = stream_of(b, {"a", "b"}, r);
    std::vector<std::string> expected;
    for (int i = after + 1; i <= 6; ++i) expected.push_back("4-" + std::to_string(i));
    CHECK(take_ids(resumed) == expected);
  }
}

TEST(stream_places_a_drop_notice_before_its_topics_first_message) {
  Broker b(10, 5);
  b.create_topic("a");
  b.create_topic("b");
  Stream stream = stream_of(b, {"a", "b"}, opts(2));
  for (const char* t : {"a", "b", "a", "a", "a", "b"}) b.publish(t, "1", "");
  const std::string notice =
      R"(!{"type":"info","message":"messages_dropped","topic":"a","dropped":2})";
  Taken taken;
  CHECK((take_ids(stream, taken) == std::vector<std::string>{"5-2", notice, "5-4", "5-5", "5-6"}));
  CHECK(taken.dropped_count() == 2);
  CHECK(taken.topics()[0].dropped == 2 && taken.topics()[1].dropped == 0);
  CHECK(take_ids(stream, taken).empty());  // told once

  Stream sse = stream_of(b, {"b", "a"}, opts(1), Encoding::sse);
  b.publish("a", "1", "");
  b.publish("a", "1", "");
  sse.take(taken);  // the same scratch serves another stream
  std::string body;
  taken.append_to(body);
  CHECK(body.rfind("event: gap\ndata: {\"topic\":\"a\",\"dropped\":1}\n\nid: 5-8\n", 0) == 0);
}

TEST(take_through_holds_later_ids_and_their_drop_notice_back) {
  Broker b(10, 6);
  b.create_topic("t");
  auto sub = b.subscribe("t", opts(1));
  for (int i = 0; i < 3; ++i) b.publish("t", "1", "");  // 6-1 and 6-2 are dropped
  std::vector<MessagePtr> got;
  TakeResult r = sub->take(got, 100, MessageKey{6, 2});
  CHECK(got.empty() && r.dropped == 0 && r.left == 1);  // the drop waits for 6-3
  r = sub->take(got, 100, MessageKey{6, 3});
  CHECK(got.size() == 1 && r.dropped == 2 && r.left == 0);
}

TEST(stream_merges_external_ids_by_key) {
  Broker b(10, 0, true);
  b.create_topic("a");
  b.create_topic("b");
  Stream stream = stream_of(b, {"a", "b"});
  b.publish("a", "1", "", "5-0");
  b.publish("b", "1", "", "3-0");
  b.publish("a", "1", "", "7-0");
  b.publish("b", "1", "", "6-1");
  CHECK((take_ids(stream) == std::vector<std::string>{"3-0", "5-0", "6-1", "7-0"}));
}

// A native Sink takes on its own thread while the Redis reader feeds in key order: the
// take must stop at the newest key published, as with own ids.
TEST(external_ids_bound_a_take_at_the_newest_key_published) {
  Broker b(10, 0, true);
  b.create_topic("a");
  b.create_topic("b");
  auto sub = b.subscribe("a", opts());
  CHECK(sub->visible() == MessageKey{});
  b.publish("a", "1", "", "5-0");
  CHECK(sub->visible() == (MessageKey{5, 0}));
  b.publish("b", "1", "", "3-9");  // older: visible at once, the bound never goes back
  CHECK(sub->visible() == (MessageKey{5, 0}));
  b.publish("b", "1", "", "6-1");
  CHECK(sub->visible() == (MessageKey{6, 1}));
}

// The Redis reader feeds a run of entries in one call: their ids kept, the take bounded
// at the newest (as one by one); a batch with one bad or missing id publishes nothing.
TEST(external_ids_publish_many_keeps_ids_and_bounds_the_take) {
  Broker b(10, 0, true);
  b.create_topic("a");
  auto sub = b.subscribe("a", opts());
  const std::vector<BatchItem> run{{"1", "", "5-0", 1.0}, {"2", "e", "8-3", 2.0}};
  CHECK((b.publish_many("a", run).ids == std::vector<std::string>{"5-0", "8-3"}));
  CHECK(sub->visible() == (MessageKey{8, 3}));
  CHECK((ids_of(*sub) == std::vector<std::string>{"5-0", "8-3"}));
  const std::vector<BatchItem> bad{{"3", "", "9-0"}, {"4", "", "nope"}};
  bool refused = false;
  try {
    b.publish_many("a", bad);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  CHECK(refused && sub->visible() == (MessageKey{8, 3}));
  Broker own(10, 1);
  own.create_topic("a");
  refused = false;
  try {
    own.publish_many("a", run);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  CHECK(refused);
}

TEST(stream_reports_ends_per_topic) {
  Broker b(10, 7);
  b.create_topic("a");
  b.create_topic("b");
  Stream stream = stream_of(b, {"a", "b"});
  b.publish("a", "1", "");
  b.delete_topic("a");
  Taken taken;
  stream.take(taken);
  CHECK(taken.message_count() == 1);
  CHECK(taken.topics()[0].reason == CloseReason::topic_deleted && taken.topics()[0].ended);
  CHECK(taken.topics()[0].topic == "a");
  CHECK(taken.topics()[1].reason == CloseReason::none && !taken.topics()[1].ended);
  // The deleted topic left the stream, after its last message and its notice.
  CHECK(stream.size() == 1 && stream.at(0)->topic_name() == "b");
  CHECK(stream.end() == StreamEnd::none);
  CHECK(taken.pieces().size() == 2 && taken.pieces()[0].message);
  CHECK(taken.bytes(taken.pieces()[1]) == R"({"type":"info","message":"topic_deleted","topic":"a"})");
  b.shutdown();
  stream.take(taken);
  CHECK(taken.topics().size() == 1);
  CHECK(taken.topics()[0].reason == CloseReason::shutdown && taken.topics()[0].ended);
  CHECK(stream.end() == StreamEnd::shutdown && stream.empty());
  CHECK(take_ids(stream).empty());  // nothing after the end
}

TEST(stream_ends_when_empty_only_if_asked) {
  Broker b(10, 7);
  b.create_topic("a");
  b.create_topic("c");
  Stream sse(Encoding::sse, {b.subscribe("a", opts())}, /*end_when_empty=*/true);
  Stream ws(Encoding::ws_text, {b.subscribe("a", opts())});
  b.delete_topic("a");
  CHECK(take_ids(sse) == std::vector<std::string>{"!event: topic_deleted\ndata: {\"topic\":\"a\"}\n\n"});
  CHECK(sse.end() == StreamEnd::no_topics);
  CHECK(take_ids(ws).size() == 1 && ws.end() == StreamEnd::none && ws.empty());
  // A held topic (its history on its way) keeps the stream going, and gives nothing yet.
  auto held = b.subscribe("c", opts());
  Stream later(Encoding::ws_text, {}, true);
  later.add(held, /*held=*/true);
  b.publish("c", "1", "");
  CHECK(later.arm());
  CHECK(take_ids(later).empty() && later.end() == StreamEnd::none);
  later.release(*held);
  CHECK(take_ids(later) == std::vector<std::string>{"7-1"});
  // The shutdown of a stream with a subscriber is the broker's (take ends it); of one
  // with none, end_for_shutdown's.
  std::string out;
  CHECK(!later.end_for_shutdown(out) && out.empty());
  Stream bare(Encoding::ws_text);
  CHECK(bare.end_for_shutdown(out) && bare.end() == StreamEnd::shutdown);
  CHECK(out == R"({"type":"info","message":"shutdown"})");
  CHECK(!bare.end_for_shutdown(out));
}

// Broker.end: an SSE stream lets the topic go right after its `end` message (nothing of
// it after the end), then ends once no topic is left; a WebSocket stream keeps it. An end
// delivered another way (a Redis history) is told with mark_ended.
TEST(stream_lets_a_topic_go_after_its_end) {
  Broker b(10, 8);
  b.create_topic("a");
  b.create_topic("b");
  Stream sse(Encoding::sse, {b.subscribe("a", opts()), b.subscribe("b", opts())}, true);
  Stream ws = stream_of(b, {"a"});
  auto a = sse.at(0);
  b.publish("a", "1", "");
  b.publish("a", "null", "end");
  b.publish("a", "2", "");  // after the end: not delivered
  b.publish("b", "3", "");
  Taken taken;
  const auto got = take_ids(sse, taken);
  CHECK(got.size() == 3 && got[0] == "8-1" && got[2] == "8-4");
  CHECK(taken.bytes(taken.pieces()[1]).rfind("event: end\ndata: {\"topic\":\"a\"", 0) == 0);
  CHECK(taken.topics()[0].reason == CloseReason::ended && taken.topics()[0].ended);
  CHECK(taken.topics()[0].topic == "a");
  CHECK(sse.size() == 1 && sse.at(0)->topic_name() == "b" && sse.end() == StreamEnd::none);
  CHECK(a->close_reason() == CloseReason::unsubscribed);  // it left the topic too
  CHECK((take_ids(ws) == std::vector<std::string>{"8-1", "8-2", "8-3"}) && ws.size() == 1);
  b.publish("b", "null", "end");
  CHECK(take_ids(sse).size() == 1 && sse.end() == StreamEnd::no_topics);

  Stream told(Encoding::sse, {b.subscribe("b", opts())}, true);
  told.mark_ended(*told.at(0));
  CHECK(!told.arm());  // the end is to follow now
  told.take(taken);
  CHECK(taken.pieces().empty() && taken.topics()[0].reason == CloseReason::ended);
  CHECK(told.end() == StreamEnd::no_topics);
}

TEST(stream_slow_consumer_ends_it_after_the_take_and_releases_the_others) {
  Broker b(100, 7);
  b.create_topic("a");
  b.create_topic("b");
  Stream stream(Encoding::sse);
  stream.add(b.subscribe("a", opts()));
  auto slow = b.subscribe("b", opts(2, Policy::disconnect));
  stream.add(slow);
  auto other = stream.at(0);
  b.publish("a", "1", "");
  for (int i = 0; i < 3; ++i) b.publish("b", "1", "");
  const auto got = take_ids(stream);
  CHECK(got.size() == 2 && got[0] == "7-1");
  CHECK(got.back() == "!event: error\ndata: {\"code\":\"SLOW_CONSUMER\",\"topic\":\"b\"}\n\n");
  CHECK(stream.end() == StreamEnd::slow_consumer && stream.empty());
  CHECK(other->close_reason() != CloseReason::none);  // released with the stream
  // A stalled client (nothing taken): the end and its notice still come.
  auto stalled = b.subscribe("a", opts(1, Policy::disconnect));
  Stream cut(Encoding::ws_text, {stalled});
  std::string out;
  CHECK(!cut.end_if_closing(out) && out.empty());
  b.publish("a", "1", "");
  b.publish("a", "1", "");
  CHECK(cut.end_if_closing(out) && cut.end() == StreamEnd::slow_consumer);
  CHECK(out == R"({"type":"error","code":"SLOW_CONSUMER","message":"queue of topic 'a' overflowed; closing"})");
}

TEST(notices_are_encoded_for_each_encoding) {
  using namespace notice;
  CHECK(dropped(Encoding::sse, "t", 3) == "event: gap\ndata: {\"topic\":\"t\",\"dropped\":3}\n\n");
  CHECK(dropped(Encoding::ws_text, "t", 3) ==
        R"({"type":"info","message":"messages_dropped","topic":"t","dropped":3})");
  CHECK(gap(Encoding::sse, "t", "5-1") ==
        "event: gap\ndata: {\"topic\":\"t\",\"first_available\":\"5-1\"}\n\n");
  CHECK(gap(Encoding::ws_text, "t", std::nullopt) ==
        R"({"type":"info","message":"gap","topic":"t","first_available":null})");
  CHECK(topic_deleted(Encoding::sse, "t") == "event: topic_deleted\ndata: {\"topic\":\"t\"}\n\n");
  CHECK(topic_deleted(Encoding::ws_text, "t") ==
        R"({"type":"info","message":"topic_deleted","topic":"t"})");
  CHECK(shutdown(Encoding::sse, 12.5) == "event: shutdown\ndata: {\"ts\":12.500000}\n\n");
  CHECK(shutdown(Encoding::ws_text, 12.5) == R"({"type":"info","message":"shutdown"})");
  CHECK(slow_consumer(Encoding::sse, "t") ==
        "event: error\ndata: {\"code\":\"SLOW_CONSUMER\",\"topic\":\"t\"}\n\n");
  CHECK(heartbeat(Encoding::sse, 2) == "event: heartbeat\ndata: {\"ts\":2.000000}\n\n");
  CHECK(heartbeat(Encoding::ws_text, 2) == R"({"type":"info","message":"heartbeat","ts":2.000000})");
  // Ready-made frames are the texts framed; anything odd stays valid JSON.
  CHECK(topic_deleted(Encoding::ws_frame, "t") == ws_frame(topic_deleted(Encoding::ws_text, "t")));
  CHECK(gap(Encoding::ws_text, "a\"b\n", "x") ==
        R"({"type":"info","message":"gap","topic":"a\"b\u000a","first_available":"x"})");
}

TEST(own_ids_broker_refuses_an_id) {
  Broker b(10, 8);
  b.create_topic("t");
  bool refused = false;
  try {
    b.publish("t", "1", "", "8-100");
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  CHECK(refused);
}

TEST(counters_are_per_broker) {
  Broker one(10, 1), two(10, 2);
  one.create_topic("t");
  two.create_topic("t");
  auto s1 = one.subscribe("t", opts());
  auto s2 = one.subscribe("t", opts());
  for (int i = 0; i < 3; ++i) one.publish("t", "1", "");
  CHECK(one.counters().subscribers == 2 && one.counters().messages == 3);
  CHECK(two.counters().subscribers == 0 && two.counters().messages == 0);
  s1->close();
  CHECK(one.counters().subscribers == 1);
}

TEST(presence_notices_go_in_place_shared_and_only_to_listeners) {
  Broker b(10, 1);
  b.create_topic("t");
  b.create_topic("u");
  Stream listening = stream_of(b, {"t", "u"});
  listening.at(0)->set_join_leave(true);
  Stream plain = stream_of(b, {"t"});
  b.publish("t", "1", "");  // 1-1
  CHECK(b.notify("t", true, R"({"client_id":"a"})").subscribers == 1);
  b.publish("u", "2", "");  // 1-2
  b.publish("t", "3", "");  // 1-3
  Taken taken;
  const auto got = take_ids(listening, taken);
  CHECK((got == std::vector<std::string>{"1-1", "", "1-2", "1-3"}));  // a notice has no id
  CHECK(taken.message_count() == 3);
  CHECK(taken.bytes(taken.pieces()[1]) ==
        R"({"type":"info","message":"join","topic":"t","member":{"client_id":"a"}})");
  CHECK((take_ids(plain) == std::vector<std::string>{"1-1", "1-3"}));
  // A parked listener is woken by a notice, and every listener shares the one object.
  Stream other = stream_of(b, {"t"});
  other.at(0)->set_join_leave(true);
  CHECK(listening.arm() && other.arm());
  std::vector<uint64_t> woken;
  b.drain(woken);
  CHECK(b.notify("t", false, "{}").subscribers == 2);
  woken.clear();
  b.drain(woken);
  CHECK(woken.size() == 2);
  Taken a, c;
  listening.take(a);
  other.take(c);
  CHECK(a.pieces().size() == 1 && c.pieces().size() == 1);
  CHECK(a.pieces()[0].message == c.pieces()[0].message);
  CHECK(b.notify("u", true, "{}").subscribers == 0);  // nobody of "u" asked
}

TEST(presence_notices_count_toward_the_queue_and_its_policy) {
  Broker b(100, 1);
  b.create_topic("t");
  // drop_oldest: a window of 3 over 1, a, 2, b, c, 3 keeps b, c, 3 (in place); the three
  // oldest are dropped and counted, messages and notices alike.
  auto sub = b.subscribe("t", opts(3));
  sub->set_join_leave(true);
  b.publish("t", "1", "");  // 1-1
  b.notify("t", true, R"({"client_id":"a"})");
  b.publish("t", "2", "");  // 1-2
  b.notify("t", true, R"({"client_id":"b"})");
  CHECK(sub->pending() == 3);  // 2 messages, 2 notices: the oldest (1-1) went
  b.notify("t", false, R"({"client_id":"c"})");
  b.publish("t", "3", "");  // 1-3
  CHECK(sub->pending() == 3);
  std::vector<MessagePtr> got;
  const TakeResult r = sub->take(got, 1 << 20);
  CHECK(r.dropped == 3 && r.notices == 2 && got.size() == 3);
  CHECK(got[0]->id().empty() && got[1]->id().empty() && got[2]->id() == "1-3");
  CHECK(sub->dropped() == 3 && b.topic_stats()[0].dropped == 3);
  // Notices alone, however many, stay within the window.
  for (int i = 0; i < 1000; ++i) b.notify("t", i % 2 == 0, "{}");
  CHECK(sub->pending() == 3 && sub->dropped() == 1000);
  // disconnect: a listener that stopped reading is closed as a slow consumer.
  auto strict = b.subscribe("t", opts(5, Policy::disconnect));
  strict->set_join_leave(true);
  for (int i = 0; i < 5; ++i) b.notify("t", true, "{}");
  CHECK(strict->close_reason() == CloseReason::none);
  b.publish("t", "4", "");
  CHECK(strict->close_reason() == CloseReason::slow_consumer);
  auto other = b.subscribe("t", opts(5, Policy::disconnect));
  other->set_join_leave(true);
  for (int i = 0; i < 6; ++i) b.notify("t", true, "{}");
  CHECK(other->close_reason() == CloseReason::slow_consumer && other->pending() == 0);
  CHECK(b.notify("t", true, "{}").subscribers == 1);  // only `sub` is left listening
  // Through a stream, a drop among notices alone is told once, before them.
  Stream stream = stream_of(b, {"t"}, opts(2));
  stream.at(0)->set_join_leave(true);
  for (int i = 0; i < 5; ++i) b.notify("t", true, "{}");
  const auto pieces = take_ids(stream);
  CHECK(pieces.size() == 3 && pieces[1].empty() && pieces[2].empty());
  CHECK(pieces[0] == R"(!{"type":"info","message":"messages_dropped","topic":"t","dropped":3})");
}

TEST(nothing_leaks) {
  const auto before_msgs = Message::live_in_process();
  const auto before_subs = Subscriber::live_in_process();
  {
    Broker b(10, 1);
    b.create_topic("t");
    std::vector<std::shared_ptr<Subscriber>> subs;
    for (int i = 0; i < 100; ++i) subs.push_back(b.subscribe("t", opts(3)));
    for (int i = 0; i < 50; ++i) b.publish("t", "1", "");
    subs.resize(10);
  }
  CHECK(Message::live_in_process() == before_msgs);
  CHECK(Subscriber::live_in_process() == before_subs);
}

int main() { return fanwire_test::run_all(); }
