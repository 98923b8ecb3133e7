"""``GET /metrics``: Prometheus text exposition, read from ``broker.stats()`` at scrape time.

Each router gets its own registry (no global state), so several apps in one process
never collide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..broker import TopicInfo
from .runtime import Runtime

_TOTALS = (
    ("published", "published_count", "Messages published"),
    ("delivered", "delivered_count", "Messages delivered to subscribers"),
    ("dropped", "dropped_count", "Messages dropped by slow-consumer policies"),
    ("conflated", "conflated_count", "Messages skipped as superseded by conflation"),
)


class BrokerCollector(Collector):
    """Turns the broker's counters into metric families on every scrape."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        stats = self.runtime.broker.stats()
        for name, key, doc in _TOTALS:
            yield CounterMetricFamily(f"fanwire_{name}", doc, value=stats[key])
        yield GaugeMetricFamily("fanwire_topics", "Topics", value=stats["topic_count"])
        yield GaugeMetricFamily(
            "fanwire_subscribers", "Subscriptions (one per topic)", value=stats["subscriber_count"]
        )
        yield self._connections()
        yield GaugeMetricFamily(
            "fanwire_uptime_seconds", "Seconds since start", value=self.runtime.uptime
        )
        yield from self._per_topic(self.runtime.broker.topics())
        yield from _presence(self.runtime.broker.console_stats())

    def _connections(self) -> Metric:
        family = GaugeMetricFamily(
            "fanwire_connections", "Open client connections", labels=["transport"]
        )
        for transport, count in self.runtime.connections.open.items():
            family.add_metric([transport], count)
        return family

    @staticmethod
    def _per_topic(topics: list[TopicInfo]) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "fanwire_topic_messages", "Messages published per topic", labels=["topic"]
        )
        subscribers = GaugeMetricFamily(
            "fanwire_topic_subscribers", "Subscribers per topic", labels=["topic"]
        )
        dropped = CounterMetricFamily(
            "fanwire_topic_dropped", "Messages dropped per topic", labels=["topic"]
        )
        conflated = CounterMetricFamily(
            "fanwire_topic_conflated", "Messages skipped as superseded per topic", labels=["topic"]
        )
        for row in topics:
            messages.add_metric([row.name], row.messages)
            subscribers.add_metric([row.name], row.subscribers)
            dropped.add_metric([row.name], row.dropped)
            conflated.add_metric([row.name], row.conflated)
        yield from (messages, subscribers, dropped, conflated)


FILL_BUCKETS = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def _presence(console: dict[str, Any]) -> Iterator[Metric]:
    """Occupancy and presence per topic, slow-consumer closes, and the subscribers' lag:
    every queue's fill as a histogram, the worst ones as gauges."""
    occupancy = GaugeMetricFamily(
        "fanwire_topic_occupancy", "Subscribed connections per topic, every node", labels=["topic"]
    )
    members = GaugeMetricFamily(
        "fanwire_topic_presence", "Presence members per topic, every node", labels=["topic"]
    )
    for topic, count in console["occupancy"].items():
        occupancy.add_metric([topic], count)
        members.add_metric([topic], console["presence"].get(topic, 0))
    yield from (occupancy, members)
    yield CounterMetricFamily(
        "fanwire_slow_consumer_disconnects",
        "Subscriptions closed as slow consumers",
        value=console["slow_consumer_count"],
    )
    fills = console["queue_fills"]
    buckets = [(str(b), sum(1 for f in fills if f <= b)) for b in FILL_BUCKETS]
    buckets.append(("+Inf", len(fills)))
    yield HistogramMetricFamily(
        "fanwire_subscriber_queue_fill",
        "Fill (waiting / queue size) of each subscription's queue",
        buckets=buckets,
        sum_value=sum(fills),
    )
    labels = ["client_id", "transport", "topic"]
    pending = GaugeMetricFamily(
        "fanwire_worst_subscriber_pending", "Messages waiting, worst subscribers", labels=labels
    )
    fill = GaugeMetricFamily(
        "fanwire_worst_subscriber_fill", "Queue fill, worst subscribers", labels=labels
    )
    for row in console["worst_subscribers"]:
        key = [row["client_id"] or "", row["transport"], row["topic"]]
        pending.add_metric(key, row["pending"])
        fill.add_metric(key, row["fill"])
    yield from (pending, fill)


def metrics_router(runtime: Runtime) -> APIRouter:
    """``GET /metrics`` for one broker."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(runtime))
    api = APIRouter(tags=["monitoring"])

    @api.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return api
