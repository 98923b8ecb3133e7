// Multi-thread stress: publishers on several threads, many subscribers drained by one
// "loop" thread, subscriber churn, topic deletes and a shutdown racing with publishes.
// Run under ThreadSanitizer and AddressSanitizer by CI (see tests/test_cpp.py).
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>

#include "check.hpp"
#include "fanwire/broker.hpp"
#include "fanwire/stream.hpp"

using namespace fanwire;
using namespace std::chrono_literals;

namespace {

struct Consumer {
  std::shared_ptr<Subscriber> sub;
  MessageKey last{};
  uint64_t received = 0;
  uint64_t dropped = 0;
  bool out_of_order = false;
};

SubscribeOptions options(uint64_t waiter, size_t queue, Policy policy) {
  SubscribeOptions o;
  o.waiter = waiter;
  o.queue_size = queue;
  o.policy = policy;
  return o;
}

void consume(Consumer& c) {
  std::vector<MessagePtr> batch;
  c.dropped += c.sub->take(batch, 1 << 20).dropped;
  for (auto& m : batch) {
    if (!(c.last < m->key())) c.out_of_order = true;
    c.last = m->key();
  }
  c.received += batch.size();
}

}  // namespace

TEST(publish_fanout_churn_delete_shutdown) {
  const std::vector<std::string> topics = {"a", "b", "c", "d"};
  const auto live_msgs_before = Message::live_in_process();
  const auto live_subs_before = Subscriber::live_in_process();
  {
    Broker broker(64);
    for (auto& t : topics) broker.create_topic(t);
    std::map<uint64_t, Consumer> consumers;  // owned by the loop thread only
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> published{0};

    std::vector<std::thread> threads;
    for (int p = 0; p < 4; ++p) {
      threads.emplace_back([&, p] {
        uint64_t n = 0;
        while (!stop.load()) {
          try {
            broker.publish(topics[(n + p) % topics.size()], R"({"n":1})", "");
            published.fetch_add(1);
          } catch (const TopicNotFound&) {
          }
          ++n;
        }
      });
    }
    // Deleting and re-creating topic "d" while publishers and subscribers use it.
    threads.emplace_back([&] {
      while (!stop.load()) {
        broker.delete_topic("d");
        std::this_thread::sleep_for(1ms);
        broker.create_topic("d");
        std::this_thread::sleep_for(2ms);
      }
    });

    // The loop thread: subscribes, drains wake-ups, takes, re-arms, churns subscribers.
    uint64_t next_waiter = 1;
    const auto deadline = std::chrono::steady_clock::now() + 1500ms;
    std::vector<uint64_t> tokens;
    while (std::chrono::steady_clock::now() < deadline) {
      while (consumers.size() < 300) {
        const uint64_t w = next_waiter++;
        const Policy policy = w % 3 == 0 ? Policy::disconnect : Policy::drop_oldest;
        try {
          auto sub = broker.subscribe(topics[w % topics.size()], options(w, 8 + w % 50, policy));
          consumers[w].sub = std::move(sub);
        } catch (const TopicNotFound&) {
          break;
        }
      }
      tokens.clear();
      broker.drain(tokens);
      for (uint64_t token : tokens) {
        auto it = consumers.find(token & Notifier::kWaiterMask);
        if (it != consumers.end()) consume(it->second);
      }
      for (auto it = consumers.begin(); it != consumers.end();) {
        Consumer& c = it->second;
        CHECK(!c.out_of_order);
        const bool closed = c.sub->close_reason() != CloseReason::none;
        if (closed || it->first % 7 == next_waiter % 7) {
          it = consumers.erase(it);  // churn: unsubscribe by dropping the last reference
          continue;
        }
        if (!c.sub->arm()) consume(c);
        ++it;
      }
    }
    // Shutdown races with the publishers still running.
    broker.shutdown();
    stop.store(true);
    for (auto& t : threads) t.join();
    tokens.clear();
    broker.drain(tokens);
    for (auto& [w, c] : consumers) {
      CHECK(c.sub->close_reason() != CloseReason::none);
      consume(c);
      CHECK(!c.out_of_order);
    }
    CHECK(published.load() > 0);
    std::printf("  published %llu, subscribers created %llu\n",
                static_cast<unsigned long long>(published.load()),
                static_cast<unsigned long long>(next_waiter - 1));
  }
  CHECK(Message::live_in_process() == live_msgs_before);
  CHECK(Subscriber::live_in_process() == live_subs_before);
}

TEST(exact_accounting_with_concurrent_publishers) {
  // One topic, several publishers, slow drop_oldest subscribers: every message is either
  // received or counted as dropped, exactly once, in order.
  Broker broker(128);
  broker.create_topic("t");
  std::vector<Consumer> consumers(50);
  for (size_t i = 0; i < consumers.size(); ++i)
    consumers[i].sub = broker.subscribe("t", options(i + 1, 4 + i, Policy::drop_oldest));
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int p = 0; p < 4; ++p)
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) broker.publish("t", "0", "");
    });
  std::vector<uint64_t> tokens;
  for (int round = 0; round < 2000; ++round) {
    for (auto& c : consumers)
      if (round % (1 + c.last.lo % 5) == 0) consume(c);
  }
  for (auto& t : threads) t.join();
  for (auto& c : consumers) {
    consume(c);
    CHECK(!c.out_of_order);
    CHECK(c.received + c.dropped == 4u * kPerThread);
    CHECK(c.dropped == c.sub->dropped());
  }
}

TEST(streams_over_several_topics_stay_in_id_order_across_takes) {
  // Publishers race on four topics; each stream takes all four while they publish. Ids
  // are issued before their message lands in the ring, so without the visible() bound a
  // take could deliver a newer id of one topic before an older one of another lands.
  const std::vector<std::string> topics = {"a", "b", "c", "d"};
  Broker broker(4096);
  for (auto& t : topics) broker.create_topic(t);
  std::vector<Stream> streams;
  for (uint64_t w = 1; w <= 16; ++w) {
    streams.emplace_back(Encoding::sse);
    for (auto& t : topics)
      streams.back().add(broker.subscribe(t, options(w, 4096, Policy::drop_oldest)));
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> published{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < 4; ++p)
    threads.emplace_back([&, p] {
      for (uint64_t n = 0; !stop.load(); ++n) {
        broker.publish(topics[(n * 7 + p) % topics.size()], "0", "");
        published.fetch_add(1);
      }
    });
  std::vector<MessageKey> last(streams.size());
  std::vector<uint64_t> received(streams.size()), dropped(streams.size());
  bool out_of_order = false;
  Taken taken;
  auto take = [&](size_t i) {
    streams[i].take(taken);
    for (const auto& piece : taken.pieces()) {
      if (!piece.message) continue;
      if (!(last[i] < piece.message->key())) out_of_order = true;
      last[i] = piece.message->key();
    }
    received[i] += taken.message_count();
    dropped[i] += taken.dropped_count();
    taken.clear();
  };
  const auto deadline = std::chrono::steady_clock::now() + 1000ms;
  while (std::chrono::steady_clock::now() < deadline)
    for (size_t i = 0; i < streams.size(); ++i) take(i);
  stop.store(true);
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < streams.size(); ++i) {
    take(i);
    CHECK(received[i] + dropped[i] == published.load());
  }
  CHECK(!out_of_order);
  CHECK(published.load() > 0);
}

TEST(notifier_never_loses_a_wakeup) {
  // Producers push while the consumer waits on the fd only: a lost signal leaves tokens
  // queued with nothing to wake the consumer (the poll below then times out).
  Notifier notifier;
  constexpr int kProducers = 3, kPerProducer = 200000;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p)
    producers.emplace_back([&notifier] {
      for (int i = 0; i < kPerProducer; ++i) notifier.push(1, true);
    });
  std::vector<uint64_t> tokens;
  size_t received = 0;
  bool stalled = false;
  while (received < size_t{kProducers} * kPerProducer) {
    pollfd pfd{notifier.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 2000) == 0) {
      stalled = true;
      break;
    }
    tokens.clear();
    notifier.drain(tokens);
    received += tokens.size();
  }
  for (auto& t : producers) t.join();
  CHECK(!stalled);
}

int main() { return fanwire_test::run_all(); }
