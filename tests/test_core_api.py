"""The native core's semantics through the Python API (fanwire.Broker / Subscription)."""

import asyncio
import logging
import threading

import orjson
import pytest
from core_helpers import drain_sse, drain_ws, sse_frames

import fanwire


def run(coro):
    return asyncio.run(coro)


def test_publish_returns_increasing_ids_and_frames_match_protocol():
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("orders")
        async with broker.subscribe("orders") as sub:
            first = broker.publish("orders", {"qty": 3})
            second = broker.publish("orders", [1, "x"], event="tick")
            frames = await drain_sse(sub)
        epoch, seq = first.split("-")
        assert second == f"{epoch}-{int(seq) + 1}"
        assert [f["id"] for f in frames] == [first, second]
        assert [f["event"] for f in frames] == ["message", "tick"]
        assert frames[0]["data"]["topic"] == "orders"
        assert frames[0]["data"]["data"] == {"qty": 3}
        assert isinstance(frames[0]["data"]["ts"], float)

    run(main())


def test_ws_mode_yields_event_texts():
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("t")
        async with broker.subscribe("t", mode="ws") as sub:
            mid = broker.publish("t", {"a": "é"}, event="e1")
            messages = await drain_ws(sub)
        assert messages == [
            {
                "type": "event",
                "topic": "t",
                "message_id": mid,
                "data": {"a": "é"},
                "ts": messages[0]["ts"],
                "event": "e1",
            }
        ]

    run(main())


def test_bad_input_raises_protocol_errors():
    broker = fanwire.Broker(max_payload=100)
    with pytest.raises(fanwire.InvalidTopic):
        broker.create_topic("bad\r\nname")
    with pytest.raises(fanwire.InvalidTopic):
        broker.create_topic("x" * 10_000)
    broker.create_topic("t")
    with pytest.raises(fanwire.TopicNotFound):
        broker.publish("missing", 1)
    with pytest.raises(fanwire.PayloadTooLarge):
        broker.publish("t", "x" * 200)
    with pytest.raises(fanwire.InvalidMessage):
        broker.publish("t", 1, event="bad event")
    with pytest.raises(fanwire.InvalidMessage):
        broker.publish("t", {1: object()})


def test_replay_then_live_without_duplicate_or_gap():
    async def main():
        broker = fanwire.Broker(retention=50)
        broker.create_topic("t")
        published = [broker.publish("t", i) for i in range(30)]
        async with broker.subscribe("t", last_n=10) as sub:
            published += [broker.publish("t", i) for i in range(30, 40)]
            frames = await drain_sse(sub)
        assert [f["id"] for f in frames] == published[20:]

    run(main())


def test_resume_after_id_and_gap_when_too_old():
    async def main():
        broker = fanwire.Broker(retention=5)
        broker.create_topic("t")
        ids = [broker.publish("t", i) for i in range(10)]
        async with broker.subscribe("t", since=ids[6]) as sub:
            resumed = await drain_sse(sub)
        assert [f["id"] for f in resumed] == ids[7:]
        async with broker.subscribe("t", since=ids[1]) as sub:
            gapped = await drain_sse(sub)
        assert gapped[0]["event"] == "gap"
        assert gapped[0]["data"] == {"topic": "t", "first_available": ids[5]}
        assert [f["id"] for f in gapped[1:]] == ids[5:]

    run(main())


@pytest.mark.parametrize("since", ["garbage", "1-1", "", "12345678901234567890123-5"])
def test_resume_from_foreign_or_unparseable_id_is_a_gap_not_an_error(since):
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("t")
        ids = [broker.publish("t", i) for i in range(3)]
        async with broker.subscribe("t", since=since, mode="ws") as sub:
            messages = await drain_ws(sub)
        assert messages[0] == {
            "type": "info",
            "message": "gap",
            "topic": "t",
            "first_available": ids[0],
        }
        assert [m["message_id"] for m in messages[1:]] == ids

    run(main())


def test_drop_oldest_counts_exactly_and_tells_the_client():
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("t")
        async with broker.subscribe("t", queue_size=10, mode="ws") as sub:
            ids = [broker.publish("t", i) for i in range(25)]
            messages = await drain_ws(sub)
            assert sub.dropped == 15
        assert messages[0] == {
            "type": "info",
            "message": "messages_dropped",
            "topic": "t",
            "dropped": 15,
        }
        assert [m["message_id"] for m in messages[1:]] == ids[15:]
        assert broker.stats()["topics"]["t"]["dropped_count"] == 15

    run(main())


def test_disconnect_policy_closes_slow_consumer():
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("t")
        async with broker.subscribe("t", policy="disconnect", queue_size=5, mode="ws") as sub:
            for i in range(6):
                broker.publish("t", i)
            await asyncio.sleep(0.05)
            assert sub.must_close.is_set()
            messages = await drain_ws(sub)
            assert sub.close_reason == fanwire.StreamEnd.slow_consumer
        assert messages == [messages[0]]
        assert messages[0]["type"] == "error" and messages[0]["code"] == "SLOW_CONSUMER"
        assert broker.topics()[0].subscribers == 0

    run(main())


def test_topic_delete_notifies_and_sse_stream_ends_when_no_topic_left():
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("a")
        broker.create_topic("b")
        async with broker.subscribe(["a", "b"]) as sub:
            broker.publish("a", 1)
            assert broker.delete_topic("a")
            frames = await drain_sse(sub)
            assert [f["event"] for f in frames] == ["message", "topic_deleted"]
            assert sub.topics == ["b"]
            broker.delete_topic("b")
            frames = await drain_sse(sub)
            assert frames == [{"event": "topic_deleted", "data": {"topic": "b"}}]
            assert sub.close_reason == fanwire.StreamEnd.no_topics

    run(main())


def test_shutdown_wakes_every_subscriber_with_a_notice():
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("t")
        subs = [broker.subscribe("t", mode="ws" if i % 2 else "sse") for i in range(20)]
        waiters = [asyncio.ensure_future(s.next_batch()) for s in subs]
        await asyncio.sleep(0.01)
        broker.shutdown()
        batches = await asyncio.wait_for(asyncio.gather(*waiters), 5)
        for sub, batch in zip(subs, batches, strict=True):
            assert sub.close_reason == fanwire.StreamEnd.shutdown
            if isinstance(batch, bytes):
                assert sse_frames(batch)[0]["event"] == "shutdown"
            else:
                assert '"message":"shutdown"' in batch[0]
        with pytest.raises(fanwire.ShuttingDown):
            broker.publish("t", 1)

    run(main())


def test_context_manager_unsubscribes_whatever_the_exit():
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("t")
        with pytest.raises(RuntimeError):
            async with broker.subscribe("t"):
                assert broker.topics()[0].subscribers == 1
                raise RuntimeError("boom")
        assert broker.topics()[0].subscribers == 0

    run(main())


def test_publish_from_another_thread_wakes_the_loop():
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("t")
        async with broker.subscribe("t") as sub:
            thread = threading.Thread(target=lambda: [broker.publish("t", i) for i in range(100)])
            thread.start()
            frames = []
            while len(frames) < 100:
                batch = await asyncio.wait_for(sub.next_batch(), 5)
                frames.extend(sse_frames(batch))
            thread.join()
        assert [f["data"]["data"] for f in frames] == list(range(100))

    run(main())


def test_wakes_once_per_batch_not_per_message():
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("t")
        async with broker.subscribe("t") as sub:
            await sub.next_batch(timeout=0.01)  # parks
            for i in range(500):
                broker.publish("t", i)
            batch = await sub.next_batch(timeout=1)
        assert len(sse_frames(batch)) == 500

    run(main())


def test_auto_create_and_topic_listing():
    broker = fanwire.Broker(auto_create=True)
    broker.publish("new.topic", 1)
    assert [(t.name, t.messages) for t in broker.topics()] == [("new.topic", 1)]
    assert broker.create_topic("new.topic") is False


@pytest.mark.parametrize("mode", ["sse", "ws"])
def test_several_topics_come_in_id_order_replay_and_live(mode):
    """Broker.subscribe over two topics with last_n: the replay and what follows are
    merged in id order, not topic by topic."""

    async def main():
        broker = fanwire.Broker()
        for topic in "ab":
            broker.create_topic(topic)
        published = [(t, broker.publish(t, i)) for i, t in enumerate("babbaabab")]
        replay = [mid for t, mid in published if t == "a"][-3:]
        replay += [mid for t, mid in published if t == "b"][-3:]
        async with broker.subscribe(["a", "b"], last_n=3, mode=mode) as sub:
            live = [broker.publish(t, i) for i, t in enumerate("bbab")]
            if mode == "sse":
                ids = [f["id"] for f in await drain_sse(sub)]
            else:
                ids = [m["message_id"] for m in await drain_ws(sub)]
        expected = sorted(replay, key=lambda mid: int(mid.split("-")[1])) + live
        assert ids == expected

    run(main())


def test_counters_are_per_broker():
    """Two brokers in one process: subscribers and retained messages of one are not
    counted by the other (/health, /stats and /metrics read these)."""

    async def main():
        one, two = fanwire.Broker(), fanwire.Broker()
        for broker in (one, two):
            broker.create_topic("t")
        subs = [one.subscribe("t") for _ in range(3)]
        one.publish("t", 1)
        assert one.stats()["subscriber_count"] == 3
        assert one.stats()["retained_messages"] == 1
        assert two.stats()["subscriber_count"] == 0
        assert two.stats()["retained_messages"] == 0
        for sub in subs:
            sub.close()
        assert one.stats()["subscriber_count"] == 0
        one.close()
        two.close()

    run(main())


class _FailingWriter:
    """A direct writer whose transport write fails (e.g. the connection just broke)."""

    def writable(self) -> bool:
        return True

    def write(self, batch: object) -> None:
        raise RuntimeError("write failed")


def test_a_failing_wake_up_does_not_cost_the_others_of_its_round(caplog):
    async def main():
        broker = fanwire.Broker(wake_interval=0)
        broker.create_topic("t")
        broken = broker.subscribe("t", mode="ws_frames")
        broken.direct = _FailingWriter()
        healthy = broker.subscribe("t", mode="ws")
        # Both park, the broken one first: the core wakes them in that order.
        broken_task = asyncio.create_task(broken.next_batch())
        await asyncio.sleep(0)
        healthy_task = asyncio.create_task(healthy.next_batch())
        await asyncio.sleep(0)
        mid = broker.publish("t", 1)
        batch = await asyncio.wait_for(healthy_task, 5)
        assert [orjson.loads(text)["message_id"] for text in batch] == [mid]
        broken_task.cancel()
        broken.close()
        healthy.close()
        broker.close()

    with caplog.at_level(logging.ERROR, logger="fanwire"):
        run(main())
    errors = [r for r in caplog.records if r.name == "fanwire" and r.exc_info]
    assert errors and isinstance(errors[0].exc_info[1], RuntimeError)
