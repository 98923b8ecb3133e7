"""Typed stubs of the C++ extension ``fanwire._core`` (see cpp/bindings.cpp)."""

from typing import ClassVar

class TopicNotFound(KeyError):
    """Raised by the core for a topic it does not hold; the broker turns it into
    fanwire.errors.TopicNotFound."""

class CoreSub:
    """One subscriber of one topic: a bounded window over the topic's log."""

    @property
    def topic(self) -> str: ...
    @property
    def gap(self) -> bool:
        """True when the resume id was older than what is retained (or not ours)."""
    @property
    def first_available(self) -> str | None: ...
    @property
    def pending(self) -> int:
        """Messages and presence notices waiting (both count toward the queue)."""
    @property
    def dropped(self) -> int: ...
    @property
    def close_reason(self) -> CloseReason: ...
    def arm(self) -> bool:
        """Park until the next message; False (not parked) if something is ready now."""
    def skip_through(self, message_id: str) -> None:
        """Never deliver a message whose id is not after ``message_id``."""
    def close(self) -> None: ...
    @property
    def join_leave(self) -> bool:
        """Whether it receives the topic's presence join/leave notices (Core.notify)."""
    @join_leave.setter
    def join_leave(self, on: bool) -> None: ...

class Policy:
    """What a full queue does: drop its oldest messages, or close the subscriber."""

    drop_oldest: ClassVar[Policy]
    disconnect: ClassVar[Policy]
    conflate: ClassVar[Policy]
    __members__: ClassVar[dict[str, Policy]]
    def __init__(self, value: int) -> None: ...
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...
    def __index__(self) -> int: ...
    def __int__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class Encoding:
    """How a Stream encodes: SSE frames, WebSocket texts, or whole WebSocket frames."""

    sse: ClassVar[Encoding]
    ws: ClassVar[Encoding]
    ws_frames: ClassVar[Encoding]
    __members__: ClassVar[dict[str, Encoding]]
    def __init__(self, value: int) -> None: ...
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...
    def __index__(self) -> int: ...
    def __int__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class CloseReason:
    """Why a subscriber was closed (none while it is open)."""

    none: ClassVar[CloseReason]
    unsubscribed: ClassVar[CloseReason]
    slow_consumer: ClassVar[CloseReason]
    topic_deleted: ClassVar[CloseReason]
    shutdown: ClassVar[CloseReason]
    ended: ClassVar[CloseReason]  # its producer ended it (SSE streams): see Stream.take
    __members__: ClassVar[dict[str, CloseReason]]
    def __init__(self, value: int) -> None: ...
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...
    def __index__(self) -> int: ...
    def __int__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class StreamEnd:
    """Why a Stream (or a native Sink) ended, none while it runs: no topic left, the
    shutdown, a slow consumer under disconnect, the client gone, or closed by its owner."""

    none: ClassVar[StreamEnd]
    no_topics: ClassVar[StreamEnd]
    shutdown: ClassVar[StreamEnd]
    slow_consumer: ClassVar[StreamEnd]
    client_gone: ClassVar[StreamEnd]
    closed: ClassVar[StreamEnd]
    __members__: ClassVar[dict[str, StreamEnd]]
    def __init__(self, value: int) -> None: ...
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...
    def __index__(self) -> int: ...
    def __int__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

def gap_notice(encoding: Encoding, topic: str, first_available: str | None) -> bytes | str:
    """The ``gap`` notice (bytes for SSE and WebSocket frames, str for WebSocket texts)."""

def heartbeat_notice(encoding: Encoding) -> bytes | str:
    """A heartbeat stamped now."""

class TopicNote:
    """One topic's part of a Batch (only topics that dropped messages or are closed)."""

    @property
    def topic(self) -> str: ...
    @property
    def dropped(self) -> int:
        """Messages dropped (drop_oldest); the notice is in the batch already."""
    @property
    def close_reason(self) -> CloseReason: ...
    @property
    def ended(self) -> bool:
        """Closed, and nothing of it is left to deliver: it left the stream (its notice is
        in the batch), or it ended the whole stream (see Stream.end)."""

class Batch:
    """What one Stream.take returned: every topic's ready messages in id order."""

    @property
    def data(self) -> bytes:
        """SSE or WebSocket frames, drop notices in place (b"" for WebSocket texts)."""
    @property
    def texts(self) -> list[str]:
        """WebSocket texts, drop notices in place ([] for the other encodings)."""
    @property
    def messages(self) -> int: ...
    @property
    def dropped(self) -> int:
        """Messages dropped since the last take, all topics together."""
    @property
    def topics(self) -> list[TopicNote]: ...

class Stream:
    """One connection's subscribers, taken in one call and merged in id order, with every
    notice in place and the end-of-stream rules (``end``)."""

    def __init__(self, encoding: Encoding, end_when_empty: bool = False) -> None: ...
    @property
    def encoding(self) -> Encoding: ...
    @property
    def end(self) -> StreamEnd:
        """Why the stream ended (set by take or close); StreamEnd.none while it runs."""
    def __len__(self) -> int: ...
    def add(self, sub: CoreSub, held: bool = False) -> None:
        """``held``: nothing of it is taken until ``release`` (a history on its way)."""
    def release(self, sub: CoreSub) -> None: ...
    def mark_ended(self, sub: CoreSub) -> None:
        """``sub``'s ``end`` message was delivered another way (a history from Redis):
        the next take lets its topic go (``CloseReason.ended``), as if it took it (SSE)."""
    def remove(self, sub: CoreSub) -> bool:
        """Forget ``sub`` (it stays open); False if it is not in the stream."""
    def arm(self) -> bool:
        """Park every subscriber; False (not all parked) if something is ready now."""
    def take(self) -> Batch: ...
    def end_for_shutdown(self) -> bytes | str | None:
        """With no subscriber left for the shutdown to close: end the stream (shutdown)
        and return its notice; None if it ended already or a subscriber will carry it."""
    def close(self) -> None:
        """End the stream (StreamEnd.closed): close every subscriber and forget them."""

class LiveCounts:
    @property
    def messages(self) -> int: ...
    @property
    def subscribers(self) -> int: ...

def live_in_process() -> LiveCounts:
    """Core objects alive in the process, of every Core (leak checks; see Core.counters)."""

def ws_frame(text: str) -> bytes:
    """An unmasked WebSocket text frame carrying ``text``."""

class Encoded:
    """A message as the core encodes it at publish time."""

    @property
    def sse(self) -> bytes:
        """Its SSE frame."""
    @property
    def ws(self) -> str:
        """Its WebSocket ``event`` text."""

def encode(topic: str, message_id: str, data: bytes, event: str, ts: float) -> Encoded:
    """A message encoded as the core does (for history read from a shared log)."""

class Sink:
    """A native SSE stream: the core writes its frames straight to the socket."""

    @property
    def end(self) -> StreamEnd: ...
    @property
    def flushed(self) -> bool:
        """True when no byte waits for the socket."""
    @property
    def frames(self) -> int: ...
    @property
    def done(self) -> bool:
        """True once the core closed the socket (Python is told then, once)."""
    def inject(self, data: bytes) -> None:
        """Queue SSE bytes (e.g. a gap notice) behind what is ready now."""
    def close(self) -> None: ...

class WsSink:
    """A WebSocket connection the core owns after its handshake: it writes every frame
    (events from its stream, and the frames Python queues, in order), answers pings,
    parses client frames and closes with the engine's code."""

    @property
    def end(self) -> StreamEnd: ...
    @property
    def frames(self) -> int: ...
    @property
    def done(self) -> bool:
        """True once the core closed the socket (Python is told then, once)."""
    @property
    def close_code(self) -> int:
        """The close code sent or echoed (0 while open)."""
    def send(self, frames: bytes) -> None:
        """Queue whole WebSocket frames behind everything queued so far."""
    def hold(self) -> None:
        """Take no event until :meth:`release` (while a client message is answered)."""
    def release(self) -> None: ...
    def subscribe(self, sub: CoreSub, frames: bytes) -> bool:
        """Queue ``frames`` (the ack) and add ``sub`` at once; False once it ended."""
    def unsubscribe(self, sub: CoreSub, frames: bytes) -> bool:
        """Take what is ready, remove ``sub`` and queue ``frames`` (the ack) at once."""
    def inject(self, frames: bytes) -> None:
        """Queue a notice behind what the subscribers hold now."""
    def shutdown(self) -> bool:
        """No subscriber will carry the shutdown: queue its notice and close 1001."""
    def close_with(self, code: int) -> None:
        """A close frame with ``code`` after what is queued."""
    def receive(self) -> list[bytes]:
        """The client messages received so far, oldest first."""
    def close(self) -> None: ...

class Writer:
    """The threads that write every native SSE stream and WebSocket of a Core: one
    epoll thread per lane, each connection on the least loaded lane for its life."""

    def __init__(self, core: Core, threads: int = 0) -> None:
        """``threads`` 0: one per CPU but one (the event loop's), at least 1, at most 4."""
    def attach(
        self,
        subs: list[CoreSub],
        fd: int,
        preamble: bytes,
        heartbeat: float,
        waiter: int,
        close_grace: float = 5.0,
    ) -> Sink:
        """Take ``subs`` over and own the connection on ``fd`` (closed by the Sink): it
        writes, reads to see the client leave, finishes or resets the response."""
    def attach_ws(
        self,
        fd: int,
        waiter: int,
        max_message: int,
        ping_interval: float,
        ping_timeout: float,
        heartbeat: float,
        close_grace: float,
    ) -> WsSink:
        """Own the WebSocket connection on ``fd`` (closed by the WsSink) after its
        handshake; ``waiter`` is woken for client messages and, closing, at the end."""
    def sink_count(self) -> int: ...
    def thread_count(self) -> int: ...
    def limit_grace(self, seconds: float) -> None:
        """No ended stream waits more than ``seconds`` from now for its bytes to leave."""

class PublishResult:
    @property
    def id(self) -> str: ...
    @property
    def subscribers(self) -> int:
        """Subscribers the message reached."""
    @property
    def must_drain(self) -> bool:
        """The caller must arrange a drain itself (see Notifier::push)."""

class PublishManyResult:
    @property
    def ids(self) -> list[str]:
        """The batch's message ids, in order."""
    @property
    def subscribers(self) -> int:
        """Subscribers the batch reached."""
    @property
    def must_drain(self) -> bool:
        """The caller must arrange a drain itself (see Notifier::push)."""

class Wakes:
    """The wake-ups of one Core.drain."""

    @property
    def ready(self) -> list[int]:
        """Waiters with something ready."""
    @property
    def closing(self) -> list[int]:
        """Waiters the core is closing (shutdown, slow consumer)."""

class Counters:
    """One Core's counts (two Cores in one process never see each other's)."""

    @property
    def messages(self) -> int:
        """Retained by its topics."""
    @property
    def subscribers(self) -> int:
        """Open subscribers of its topics."""
    @property
    def published(self) -> int: ...
    @property
    def delivered(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def conflated(self) -> int:
        """Messages skipped as superseded by conflate-policy subscribers."""

class TopicStats:
    @property
    def name(self) -> str: ...
    @property
    def subscribers(self) -> int: ...
    @property
    def messages(self) -> int:
        """Messages published."""
    @property
    def dropped(self) -> int: ...
    @property
    def retained(self) -> int:
        """Messages in the ring now."""
    @property
    def conflated(self) -> int:
        """Messages its conflate-policy subscribers skipped as superseded."""

class Core:
    def __init__(self, retention: int = 1000, epoch: int = 0, external_ids: bool = False) -> None:
        """``external_ids``: every publish brings its id (e.g. a Redis stream id)."""
    @property
    def epoch(self) -> int: ...
    @property
    def external_ids(self) -> bool: ...
    def fileno(self) -> int: ...
    def inbox_fileno(self) -> int:
        """The fd that says native WebSockets received client messages (drain_inbox)."""
    def create_topic(
        self,
        name: str,
        retention: int = 0,
        max_age: float = 0.0,
        conflate_key: str = "",
        cache: bool = False,
    ) -> bool: ...
    def delete_topic(self, name: str) -> bool: ...
    def has_topic(self, name: str) -> bool: ...
    def topic_count(self) -> int: ...
    def topic_stats(self) -> list[TopicStats]: ...
    def publish(
        self,
        topic: str,
        data: bytes,
        event: str = "",
        message_id: str = "",
        on_loop: bool = False,
        ts: float = 0.0,
    ) -> PublishResult:
        """KeyError if no topic.
        ``ts`` 0 means now; a shared log's reader passes the publisher's time."""
    def publish_many(
        self,
        topic: str,
        data: list[bytes],
        events: list[str],
        on_loop: bool = False,
        ids: list[str] = ...,
        stamps: list[float] = ...,
    ) -> PublishManyResult:
        """A batch, in order, under one lock of the topic (one wake-up). KeyError if no
        topic. With external ids every message brings its id (``ids``, increasing) and
        its publisher's time (``stamps``, 0: now), else none may: ValueError (nothing
        published), as for a bad id or lists of different lengths."""
    def notify(self, topic: str, join: bool, member: bytes, on_loop: bool = False) -> PublishResult:
        """A presence join/leave notice (``member``: its JSON) to every subscriber of
        ``topic`` with ``join_leave``: encoded once, shared, in place after the messages
        published so far. ``subscribers``: how many it reached; no ``id``. KeyError if
        no topic."""
    def subscribe(
        self,
        topic: str,
        waiter: int,
        last_n: int,
        since: str | None,
        policy: Policy,
        queue_size: int,
    ) -> CoreSub: ...
    def drain(self) -> Wakes:
        """The waiters woken since the last drain."""
    def drain_inbox(self) -> list[int]:
        """The waiters whose native WebSocket received client messages since the last."""
    def shutdown(self) -> None: ...
    def counters(self) -> Counters: ...
