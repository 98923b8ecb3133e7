"""The three run modes: what each one measures and for how long."""

from __future__ import annotations

from dataclasses import dataclass

# Offered publish rates (msg/s): a 1-2-3-5 ladder. The search moves along it. (A 1-2-5
# ladder could only read a design at 2,000 against one at 5,000 as 40%, whatever lay
# between; the 3s cost one probe step more per scenario.)
LADDER = (
    *(1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500),
    *(1_000, 2_000, 3_000, 5_000, 10_000, 20_000, 30_000, 50_000, 100_000),
)


@dataclass(frozen=True)
class Mode:
    name: str
    clients: tuple[int, ...]  # subscriber counts, each a scenario
    payloads: tuple[int, ...]  # payload sizes (bytes of the published `data` JSON)
    big_payload_clients: tuple[int, ...]  # where payloads after the first are run too
    probe_s: float  # length of a search step
    window_s: float  # measurement window that confirms the sustained rate
    drain_s: float  # how late a message may arrive after the last publish
    max_rate: float  # top of the ladder
    start_rate: float = 100  # where the search starts when nothing predicts better
    fixed_rates: tuple[float, ...] = ()  # when set, just these rates, no search
    stall_clients: int = 100  # fast clients beside the one stalled client
    stall_rate: float = 100
    stall_s: float = 5
    stall_pairs: int = 2  # alternating (alone, stalled) windows; medians are compared
    latency_clients: int = 100  # the client count plotted as latency vs offered load
    # idle connections: memory, descriptors and CPU per connection (bench/idle.py)
    idle_clients: tuple[int, ...] = (1_000, 9_000)
    idle_window_s: float = 30  # CPU measured over this long, idle
    idle_heartbeat_s: float = 15  # SSE and WebSocket heartbeats every this many seconds
    # light load: this many subscribers at this rate (bench/light.py)
    light_clients: int = 1_000
    light_rate: float = 50
    light_s: float = 10
    # publish ingest, closed loop (bench/ingest.py)
    ingest_s: float = 5
    ingest_subscribers: tuple[int, ...] = (0, 1_000)
    # topic options and conflation (bench/options.py)
    options_clients: int = 100  # subscribers fed by a batch flood, each variant
    options_s: float = 2  # one flood
    options_rounds: int = 3  # alternating rounds over the variants; medians compared
    conflate_rate: float = 1_000  # msg/s (16 KB) published to the conflating topic
    conflate_s: float = 8  # its window, of which the lagging client stalls conflate_stall_s
    conflate_stall_s: float = 3
    # presence (bench/presence.py)
    presence_members: int = 1_000
    presence_churn_s: float = 5  # closed-loop join/leave churn beside the members
    presence_rate: float = 100  # msg/s to the members, presence on and off
    presence_s: float = 5
    presence_rounds: int = 2
    # per-request streams (bench/per_request.py)
    request_tokens: int = 500  # tokens per stream
    request_streams: int = 200  # streams in process, and over HTTP
    request_concurrency: int = 8  # HTTP streams open at once
    # many SSE clients at a low rate each (bench/many.py)
    many_clients: int = 15_000
    many_rate: float = 1  # msg/s each client gets
    many_s: float = 20
    many_per_process: int = 5_000  # clients per load generator process

    def payloads_for(self, clients: int) -> tuple[int, ...]:
        if clients in self.big_payload_clients:
            return self.payloads
        return self.payloads[:1]

    def rates(self) -> tuple[float, ...]:
        return self.fixed_rates or tuple(r for r in LADDER if r <= self.max_rate)


SMOKE = Mode(
    name="smoke",
    clients=(10,),
    payloads=(100,),
    big_payload_clients=(),
    probe_s=1,
    window_s=1,
    drain_s=2,
    max_rate=100,
    fixed_rates=(100,),
    stall_clients=10,
    stall_rate=50,
    stall_s=1,
    stall_pairs=1,
    latency_clients=10,
    idle_clients=(10,),
    idle_window_s=1,
    idle_heartbeat_s=0.5,
    light_clients=10,
    light_s=1,
    ingest_s=0.5,
    ingest_subscribers=(0, 10),
    options_clients=10,
    options_s=0.5,
    options_rounds=1,
    conflate_rate=500,
    conflate_s=1.5,
    conflate_stall_s=1,
    presence_members=10,
    presence_churn_s=0.5,
    presence_rate=50,
    presence_s=1,
    presence_rounds=1,
    request_tokens=50,
    request_streams=5,
    request_concurrency=2,
    many_clients=20,
    many_s=2,
    many_per_process=10,  # two processes: the split is exercised
)

QUICK = Mode(
    name="quick",
    clients=(100, 1_000),
    payloads=(100,),
    big_payload_clients=(),
    probe_s=1,
    window_s=2,
    drain_s=1.5,
    max_rate=50_000,
    stall_s=2,
    stall_pairs=2,
    idle_clients=(1_000,),
    idle_window_s=4,
    idle_heartbeat_s=2,
    light_s=2,
    ingest_s=2,
    options_s=1,
    options_rounds=2,
    conflate_s=4,
    conflate_stall_s=2,
    presence_churn_s=2,
    presence_s=2,
    presence_rounds=1,
    request_streams=50,
    many_clients=2_000,
    many_s=5,
    many_per_process=1_000,
)

FULL = Mode(
    name="full",
    clients=(1, 100, 1_000, 5_000),
    payloads=(100, 4096),
    big_payload_clients=(1_000,),
    probe_s=1,
    window_s=10,
    drain_s=1.5,
    max_rate=100_000,
    stall_s=3,
    stall_pairs=3,
)

MODES = {m.name: m for m in (SMOKE, QUICK, FULL)}
