"""PNG plots of the results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.many import TARGET_P99_MS
from bench.modes import Mode
from bench.report import More
from bench.scenarios import ScenarioResult

Series = dict[str, list[tuple[float, float]]]


def _series(results: list[ScenarioResult], payload: int, attr: str) -> Series:
    out: Series = defaultdict(list)
    for r in results:
        value = getattr(r, attr)
        if r.payload == payload and value is not None and value > 0:
            out[r.key].append((r.clients, value))
    return out


def _plot_lines(ax: plt.Axes, series: Series, style: str = "-o", suffix: str = "") -> None:
    for key, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], style, label=key + suffix)


def delivered_vs_clients(results: list[ScenarioResult], mode: Mode, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for payload, style in zip(mode.payloads, ("-o", "--s"), strict=False):
        _plot_lines(ax, _series(results, payload, "delivered_per_s"), style, f" ({payload} B)")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="clients",
        ylabel="delivered msgs/s (sustained rate x clients)",
        title="Sustained delivered messages per second",
    )
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_vs_load(results: list[ScenarioResult], mode: Mode, path: Path) -> None:
    chosen = [
        r for r in results if r.clients == mode.latency_clients and r.payload == mode.payloads[0]
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5), sharey=True)
    for ax, (attr, name) in zip(
        axes, (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99")), strict=True
    ):
        for r in chosen:
            steps = sorted(
                (s.rate, getattr(s, attr))
                for s in r.steps
                if s.seconds == mode.probe_s and getattr(s, attr) > 0
            )
            if steps:
                ax.plot([s[0] for s in steps], [s[1] for s in steps], "-o", label=r.key)
        ax.set(xscale="log", yscale="log", xlabel="offered msgs/s", title=name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("publish-to-receive latency (ms)")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    fig.suptitle(
        f"Latency vs offered load ({mode.latency_clients} clients, "
        f"{mode.payloads[0]} B; the last point of each line is its first failure)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def memory_vs_clients(results: list[ScenarioResult], mode: Mode, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    _plot_lines(ax, _series(results, mode.payloads[0], "memory_per_conn"))
    ax.set(
        xscale="log",
        xlabel="idle clients",
        ylabel="server RSS per connection (bytes)",
        title="Memory per idle connection",
    )
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(
    ax: plt.Axes, labels: list[str], groups: dict[str, list[float]], ylabel: str, title: str
) -> None:
    """Grouped bars: one group per label, one bar per series (0 where missing)."""
    width = 0.8 / max(len(groups), 1)
    for i, (name, values) in enumerate(sorted(groups.items())):
        xs = [x + i * width for x in range(len(labels))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(
        [x + 0.4 - width / 2 for x in range(len(labels))], labels, rotation=20, fontsize=7
    )
    ax.set(ylabel=ylabel, title=title)
    ax.grid(True, axis="y", alpha=0.3)
    if groups:
        ax.legend(fontsize=7)


def idle_per_connection(more: More, path: Path) -> None:
    labels = sorted({r.key for r in more.idle})
    counts = sorted({r.clients for r in more.idle})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (attr, ylabel) in zip(
        axes,
        (
            ("memory_per_conn", "server RSS per connection (bytes)"),
            ("fds_per_conn", "descriptors per connection"),
            ("cpu_us_per_conn_s", "µs of server CPU per second per connection"),
        ),
        strict=True,
    ):
        groups = {
            f"{n:,} clients": [
                next((getattr(r, attr) or 0 for r in more.idle if r.key == k and r.clients == n), 0)
                for k in labels
            ]
            for n in counts
        }
        _bars(ax, labels, groups, ylabel, ylabel.split(" (")[0])
    fig.suptitle("Idle connections (-deflate: the clients offer permessage-deflate)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def light_and_ingest(more: More, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5))
    light = [r for r in more.light if r.step is not None]
    labels = [r.key for r in light]
    groups = {
        "p50": [r.step.p50_ms if r.step else 0 for r in light],
        "p99": [r.step.p99_ms if r.step else 0 for r in light],
    }
    _bars(left, labels, groups, "publish-to-receive latency (ms)", "Light load")
    keys = sorted({r.key for r in more.ingest})
    subs = sorted({r.subscribers for r in more.ingest})
    groups = {
        f"{n:,} subscribers": [
            next((r.acked_per_s or 0 for r in more.ingest if r.key == k and r.subscribers == n), 0)
            for k in keys
        ]
        for n in subs
    }
    _bars(right, keys, groups, "acknowledged publishes/s", "Publish ingest")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def options_presence_tokens(more: More, path: Path) -> None:
    """Topic options' and presence's ratios (1.0: no cost), and per-token costs."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5))
    labels: list[str] = []
    values: list[float] = []
    if more.options is not None:
        for r in more.options.fanout:
            if r.variant != "plain":
                labels.append(f"{r.variant}/{r.transport} delivered")
                values.append(r.ratio_vs_plain or 0)
        if more.options.conflate is not None:
            labels.append("conflating publisher")
            values.append(more.options.conflate.publisher_ratio or 0)
    if more.presence is not None:
        labels += ["presence delivered", "presence CPU/msg"]
        values += [more.presence.delivered_ratio or 0, more.presence.cpu_ratio or 0]
    _bars(left, labels, {"ratio": values}, "ratio (1.0 = the same without)", "Options, presence")
    left.axhline(1.0, color="grey", linewidth=0.8)
    rows = more.per_request
    groups = {
        "ns per token (wall)": [r.ns_per_token or 0 for r in rows],
        "server CPU ns per token": [(r.server_cpu_us_per_token or 0) * 1e3 for r in rows],
    }
    _bars(right, [r.key for r in rows], groups, "ns per token", "Per-request streams")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def many_clients(more: More, path: Path) -> None:
    """Many SSE clients: latency against the 100 ms target, memory per connection."""
    rows = [r for r in more.many if r.step is not None]
    labels = [f"{r.key}\n{r.delivered:,}/{r.expected:,} delivered" for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = {
        name: [getattr(r.step, attr) if r.step else 0 for r in rows]
        for name, attr in (("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms"))
    }
    _bars(left, labels, groups, "publish-to-receive latency (ms)", "Latency")
    left.axhline(TARGET_P99_MS, color="red", linewidth=0.8, linestyle="--")
    memory = {"server RSS per connection": [r.memory_per_conn or 0 for r in rows]}
    _bars(right, labels, memory, "bytes", "Memory per connection")
    clients = f"{rows[0].clients:,}" if rows else "no"
    rate = f"{rows[0].rate:g}" if rows else "?"
    fig.suptitle(f"{clients} SSE clients at {rate} msg/s each (dashed: p99 target)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(
    results: list[ScenarioResult], mode: Mode, folder: Path, more: More | None = None
) -> list[Path]:
    paths = [
        folder / "delivered_vs_clients.png",
        folder / "latency_vs_load.png",
        folder / "memory_vs_clients.png",
    ]
    delivered_vs_clients(results, mode, paths[0])
    latency_vs_load(results, mode, paths[1])
    memory_vs_clients(results, mode, paths[2])
    if more is not None and more.idle:
        paths.append(folder / "idle_per_connection.png")
        idle_per_connection(more, paths[-1])
    if more is not None and (more.light or more.ingest):
        paths.append(folder / "light_load_and_ingest.png")
        light_and_ingest(more, paths[-1])
    if more is not None and (more.options or more.presence or more.per_request):
        paths.append(folder / "options_presence_tokens.png")
        options_presence_tokens(more, paths[-1])
    if more is not None and more.many:
        paths.append(folder / "many_clients.png")
        many_clients(more, paths[-1])
    return paths
