"""Broker.publish_batch: one core call for a batch (ids consecutive, in order, all or none)."""

import asyncio

import pytest
from core_helpers import drain_sse

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
        core.publish_many("t", [b"1"], [""])
    own = _core.Core(10)
    with pytest.raises(KeyError):
        own.publish_many("t", [b"1"], [""])
    own.create_topic("t")
    with pytest.raises(ValueError):
        own.publish_many("t", [b"1", b"2"], [""])
