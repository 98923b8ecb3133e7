"""Server settings: every limit with its documented default, read from ``FANWIRE_*``.

Each field below is also an environment variable: ``FANWIRE_`` + the field name in upper
case, e.g. ``FANWIRE_MAX_PAYLOAD=131072`` or ``FANWIRE_DEMO_RATE=0``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .enums import Policy
from .topics import TopicOptions, TopicRules, check_pattern

#: The settings named otherwise than the topic option they give the default of.
_OPTION_SETTINGS = {"auto_create": "auto_create_topics"}


class Settings(BaseSettings):
    """The limits and switches of a fanwire server (defaults are the documented ones)."""

    model_config = SettingsConfigDict(env_prefix="FANWIRE_", extra="ignore")

    host: str = Field("127.0.0.1", description="address `python -m fanwire` binds")
    port: int = Field(8000, ge=0, le=65535, description="port `python -m fanwire` binds")

    max_payload: int = Field(64 * 1024, ge=1, description="largest encoded `data`, bytes")
    retention: int = Field(1000, ge=1, description="messages kept per topic for replay")
    max_topics: int = Field(10_000, ge=1, description="topics a server holds at most")
    max_connections: int = Field(10_000, ge=1, description="open SSE + WebSocket clients")
    max_subscriptions_per_connection: int = Field(
        100, ge=1, description="topics one SSE stream or WebSocket may subscribe to"
    )
    auto_create_topics: bool = Field(False, description="create topics on first use")

    sse_policy: Policy = Field(Policy.disconnect, description="SSE slow-consumer policy")
    sse_queue_size: int = Field(100, ge=1, description="SSE queue per subscription")
    ws_policy: Policy = Field(Policy.drop_oldest, description="WebSocket slow-consumer policy")
    ws_queue_size: int = Field(1000, ge=1, description="WebSocket queue per subscription")
    ws_publish_rate: float = Field(
        0.0, ge=0, description="publishes/s allowed per WebSocket (0: no limit)"
    )

    heartbeat_interval: float = Field(
        15.0,
        gt=0,
        description="idle seconds between SSE heartbeats (a WebSocket asks for "
        "its own with `/ws?heartbeat=<seconds>`)",
    )
    ws_ping_interval: float = Field(
        20.0,
        ge=0,
        description="seconds between the protocol-level pings `python -m fanwire` "
        "(uvicorn) sends each WebSocket (0: none)",
    )
    ws_ping_timeout: float = Field(
        20.0,
        ge=0,
        description="seconds a WebSocket may take to answer a ping before it is "
        "closed with 1011 (0: no limit)",
    )
    sse_retry_ms: int = Field(3000, ge=0, description="the SSE `retry:` sent to clients")

    demo_rate: float = Field(10.0, ge=0, description="demo producer messages/s (0: off)")
    demo_topic: str = Field("events", description="topic the demo producer feeds")

    auth_enabled: bool = Field(False, description="require a JWT (PROTOCOL.md, Auth)")
    jwt_secret: str | None = Field(None, description="HS256 shared secret")
    jwt_public_key: str | None = Field(None, description="RS256 public key (PEM)")
    jwt_algorithms: list[str] = Field(
        default_factory=lambda: ["HS256", "RS256"], description="accepted JWT algorithms"
    )

    shutdown_grace: float = Field(
        5.0, ge=0, description="seconds given to streams to end on shutdown"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description='origins allowed by CORS, e.g. ["*"] (none: off)'
    )
    native_sse: bool = Field(
        True,
        description="let the C++ core write SSE frames straight to the socket under uvicorn "
        "(false: always the ASGI path; other servers always use it)",
    )
    wake_interval: float = Field(
        0.005,
        ge=0,
        description="least seconds between two wake-ups of the subscribers on the "
        "event loop, and a round of wake-ups never takes more than half the loop: under load "
        "each wake-up then carries a batch (0: no rate limit; client messages are answered "
        "at once)",
    )
    ws_batch_frames: bool = Field(
        True,
        description="under uvicorn, write each WebSocket batch of events as ready-made frames "
        "in one transport write (false: one ASGI send per message)",
    )
    ws_per_message_deflate: bool = Field(
        False,
        description="accept a WebSocket client's permessage-deflate offer (`python -m fanwire` "
        "passes it to uvicorn; off: no zlib context per connection, and fanwire's ready-made "
        "frames are sent as they are)",
    )
    ws_write_buffer: int = Field(
        1 << 20,
        ge=1024,
        description="bytes a WebSocket's transport may hold before the "
        "server stops taking events for it (the queue's policy then deals with the lag)",
    )
    close_grace: float = Field(
        5.0, ge=0, description="seconds a client being closed may take to read its last frames"
    )
    ws_handoff: bool = Field(
        True,
        description="under uvicorn (websockets-sansio, no TLS, no permessage-deflate, in "
        "memory), hand each WebSocket to the C++ core after its handshake: the core writes "
        "and reads every frame, Python only answers client messages",
    )
    writer_threads: int = Field(
        0,
        ge=0,
        le=64,
        description="threads of the C++ writer that owns native SSE streams and WebSockets "
        "(0: one per CPU but one, which stays the event loop's; at most 4); each connection "
        "stays on one of them",
    )
    redis_url: str | None = Field(
        None, description="Redis URL: scale out over Redis Streams (several workers or hosts)"
    )
    presence_ttl: float = Field(
        30.0,
        gt=0,
        description="Redis mode: seconds after which the subscribers and presence members "
        "of a node that stopped answering (its heartbeat, every third of this) are gone",
    )

    dedupe_window: float = Field(
        300.0, ge=0, description="seconds an idempotency key is remembered per topic (0: off)"
    )
    dedupe_max_keys: int = Field(
        10_000, ge=1, description="idempotency keys remembered per topic at most (oldest go)"
    )
    topics: dict[str, TopicOptions] = Field(
        default_factory=dict,
        description='topic patterns to options, e.g. FANWIRE_TOPICS=\'{"chat.*": '
        '{"retention": 200}}\' (README "Topic options"; the most specific pattern wins)',
    )

    @field_validator("topics")
    @classmethod
    def _check_patterns(cls, topics: dict[str, TopicOptions]) -> dict[str, TopicOptions]:
        for pattern in topics:
            check_pattern(pattern)
        return topics

    def topic_rules(self) -> TopicRules:
        """The settings' topic options: these defaults, then :attr:`topics`."""
        defaults = TopicOptions(cache=False, **self.topic_defaults())
        patterns = dict(self.topics)
        if self.demo_rate > 0:  # the demo ticker: a new dashboard sees every symbol at once
            patterns.setdefault(self.demo_topic, TopicOptions(conflate_key="symbol", cache=True))
        return TopicRules(defaults, patterns)

    def topic_defaults(self) -> dict[str, Any]:
        """The topic options a setting gives the default of, with their values: every
        TopicOptions field with a setting of its name (or see _OPTION_SETTINGS), so a new
        option with a server-wide setting needs no line here."""
        fields = type(self).model_fields
        names = {
            option: _OPTION_SETTINGS.get(option, option) for option in TopicOptions.model_fields
        }
        return {option: getattr(self, name) for option, name in names.items() if name in fields}

    @field_validator("sse_policy", "ws_policy")
    @classmethod
    def _no_server_wide_conflate(cls, policy: Policy) -> Policy:
        if policy == Policy.conflate:  # most topics have no conflate_key
            raise ValueError(
                "conflate is a topic option: set it in FANWIRE_TOPICS, with a conflate_key"
            )
        return policy

    @model_validator(mode="after")
    def _check_auth(self) -> Settings:
        if self.auth_enabled and not (self.jwt_secret or self.jwt_public_key):
            raise ValueError("auth_enabled needs jwt_secret (HS256) or jwt_public_key (RS256)")
        return self
