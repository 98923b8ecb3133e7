"""PNG plots of the results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.modes import Mode
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


def write_all(results: list[ScenarioResult], mode: Mode, folder: Path) -> list[Path]:
    paths = [
        folder / "delivered_vs_clients.png",
        folder / "latency_vs_load.png",
        folder / "memory_vs_clients.png",
    ]
    delivered_vs_clients(results, mode, paths[0])
    latency_vs_load(results, mode, paths[1])
    memory_vs_clients(results, mode, paths[2])
    return paths
