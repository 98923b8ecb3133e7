"""Broker.publish_batch: one core call for a batch (ids consecutive, in order, all or none)."""

import asyncio
import time

import pytest
from core_helpers import drain_sse, sse_frames

import fanwire
from fanwire import _core
from fanwire.errors import InvalidMessage, PayloadTooLarge, TopicNotFound


def test_batch_ids_are_consecutive_and_delivered_in_order():
    async def main():
        broker = fanwire.Broker()
        broker.create_topic("t")
        async with broker.subscribe("t") as sub:
            before = broker.publish("t", "before")
            batch = broker.publish_batch("t", [(n, None) for n in range(4)] + [("x", "tick")])
            frames = await drain_sse(sub)
        epoch, seq = before.split("-")
        assert batch.message_ids == [f"{epoch}-{int(seq) + n}" for n in range(1, 6)]
        assert batch.subscribers == 1
        assert [f["id"] for f in frames] == [before, *batch.message_ids]
        assert [f["data"]["data"] for f in frames] == ["before", 0, 1, 2, 3, "x"]
        assert frames[-1]["event"] == "tick"

    asyncio.run(main())


def test_a_bad_message_publishes_none_of_the_batch():
    broker = fanwire.Broker(max_payload=10)
    broker.create_topic("t")
    with pytest.raises(InvalidMessage):
        broker.publish_batch("t", [(1, None), (2, "bad name")])
    with pytest.raises(PayloadTooLarge):
        broker.publish_batch("t", [(1, None), ("x" * 20, None)])
    with pytest.raises(TopicNotFound):
        broker.publish_batch("nope", [(1, None)])
    assert [(t.name, t.messages) for t in broker.topics()] == [("t", 0)]


def test_core_publish_many_refuses_external_ids_and_unknown_topics():
    core = _core.Core(10, external_ids=True)
    core.create_topic("t")
    with pytest.raises(ValueError):
        core.publish_many("t", [b"1"], [""])  # a shared log's entry needs its id
    with pytest.raises(ValueError):
        core.publish_many("t", [b"1", b"2"], ["", ""], ids=["5-1", "nope"], stamps=[0, 0])
    with pytest.raises(ValueError):
        core.publish_many("t", [b"1", b"2"], ["", ""], ids=["5-1"], stamps=[0])
    assert core.topic_stats()[0].messages == 0  # a refused batch published none of it
    own = _core.Core(10)
    with pytest.raises(KeyError):
        own.publish_many("t", [b"1"], [""])
    own.create_topic("t")
    with pytest.raises(ValueError):
        own.publish_many("t", [b"1", b"2"], [""])
    with pytest.raises(ValueError):  # ids are assigned here
        own.publish_many("t", [b"1"], [""], ids=["5-1"], stamps=[0])


def test_core_publish_many_feeds_a_shared_logs_run_with_its_ids_and_times():
    """A Redis reader feeds a run of entries in one call: each keeps its stream id, its
    event and its publisher's time (max_age counts from it: an hour-old entry is not
    replayed by a topic that keeps a minute)."""
    core = _core.Core(10, external_ids=True)
    core.create_topic("t", max_age=60)
    now = time.time()
    result = core.publish_many(
        "t",
        [b'"old"', b'"a"', b'"b"'],
        ["", "tick", ""],
        ids=["7-1", "7-2", "9-4"],
        stamps=[now - 3600, now, 0],
    )
    assert result.ids == ["7-1", "7-2", "9-4"]
    sub = core.subscribe("t", 1, 10, None, _core.Policy.drop_oldest, 100)
    stream = _core.Stream(_core.Encoding.sse)
    stream.add(sub)
    frames = sse_frames(stream.take().data)
    assert [(f["id"], f["data"]["data"]) for f in frames] == [("7-2", "a"), ("9-4", "b")]
    assert frames[0]["event"] == "tick"
    stream.close()
    sub.close()
