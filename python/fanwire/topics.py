"""Topic options (PROTOCOL.md, "Topic options"): what one kind of topic keeps and allows.

Settings map topic-name patterns to :class:`TopicOptions`; a topic takes the options of
the most specific pattern that matches its name, and every option that pattern leaves
unset (``None``) takes the server's default. "Most specific", in order:

1. a pattern without ``*`` (an exact name) beats every pattern with one;
2. then the pattern with more literal (non-``*``) characters wins (``chat.room.*`` beats
   ``chat.*``, which beats ``*``);
3. then the one with fewer ``*``;
4. then the one listed first.

Patterns are matched with :func:`~fanwire.names.glob_match` (``*`` matches any run of
characters, as in auth claims), in one linear scan per pattern, once per topic: the
options of a topic are resolved when it is created and kept until it is deleted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .enums import Policy
from .errors import InvalidMessage
from .names import glob_match, is_valid_name

__all__ = ["TopicOptions", "TopicRules", "check_pattern", "check_policy", "specificity"]

_PATTERN = re.compile(r"[A-Za-z0-9_.\-*]{1,255}")


class TopicOptions(BaseModel):
    """Options of a kind of topic; ``None`` means "the server's default" (see Settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention: int | None = Field(None, ge=1, description="messages kept for replay")
    max_age: float | None = Field(
        None, gt=0, description="seconds a message is kept (None: no age limit)"
    )
    idle_ttl: float | None = Field(
        None,
        gt=0,
        description="seconds without subscriber nor publish after which the topic is "
        "deleted (None: never)",
    )
    auto_create: bool | None = Field(None, description="create the topic on first use")
    max_payload: int | None = Field(None, ge=1, description="largest encoded `data`, bytes")
    dedupe_window: float | None = Field(
        None, ge=0, description="seconds an idempotency key is remembered (0: no dedupe)"
    )
    sse_policy: Policy | None = Field(None, description="default SSE slow-consumer policy")
    sse_queue_size: int | None = Field(None, ge=1, description="SSE queue per subscription")
    ws_policy: Policy | None = Field(None, description="default WebSocket policy")
    ws_queue_size: int | None = Field(None, ge=1, description="WebSocket queue per subscription")
    conflate_key: str | None = Field(
        None, min_length=1, max_length=255, description="top-level field of `data` to conflate on"
    )
    cache: bool | None = Field(
        None, description="send a new subscriber the latest message of every key"
    )

    @field_validator("conflate_key")
    @classmethod
    def _check_key_name(cls, value: str | None) -> str | None:
        # The core compares member names as written: keep them to plain characters.
        if value is not None and not is_valid_name(value):
            raise ValueError("conflate_key must match ^[A-Za-z0-9_.-]{1,255}$")
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> TopicOptions:
        check_combination(self)
        return self

    def merged(self, over: TopicOptions) -> TopicOptions:
        """These options with every option that ``over`` sets replaced by its value."""
        return self.model_copy(update=over.model_dump(exclude_none=True))

    def public(self) -> dict[str, Any]:
        """The options as JSON values (the ``options`` of ``GET /topics/{name}``)."""
        return self.model_dump(mode="json")


def check_combination(options: TopicOptions) -> None:
    """ValueError for options that only make sense with a ``conflate_key``."""
    if options.conflate_key is None:
        if options.cache:
            raise ValueError("cache needs a conflate_key")
        for field in ("sse_policy", "ws_policy"):
            if getattr(options, field) == Policy.conflate:
                raise ValueError(f"{field} conflate needs a conflate_key")


def check_policy(policy: Policy | str | None, options: TopicOptions) -> None:
    """A subscription's ``conflate`` policy needs a topic with a ``conflate_key``."""
    if policy == Policy.conflate and options.conflate_key is None:
        raise InvalidMessage("policy conflate needs a topic with a conflate_key")


def check_pattern(pattern: str) -> str:
    """``pattern`` if it is a topic name in which ``*`` may also appear, else ValueError."""
    if not isinstance(pattern, str) or _PATTERN.fullmatch(pattern) is None:
        raise ValueError(
            f"topic pattern {pattern!r} must match ^[A-Za-z0-9_.*-]{{1,255}}$ "
            "(a topic name, `*` matching any run of characters)"
        )
    return pattern


def specificity(pattern: str) -> tuple[int, int, int]:
    """Sort key of a pattern: larger is more specific (see the module docstring)."""
    stars = pattern.count("*")
    return (int(stars == 0), len(pattern) - stars, -stars)


class TopicRules:
    """The server's default options and its patterns; :meth:`resolve` gives a topic's."""

    def __init__(
        self, defaults: TopicOptions, patterns: Mapping[str, TopicOptions] | None = None
    ) -> None:
        missing = [name for name, value in defaults if value is None and name in _REQUIRED]
        if missing:
            raise ValueError(f"the default topic options need {', '.join(missing)}")
        self.defaults = defaults
        items = [(check_pattern(p), o) for p, o in (patterns or {}).items()]
        # Most specific first; sorted() is stable, so ties keep the order they came in.
        self.patterns = sorted(items, key=lambda item: specificity(item[0]), reverse=True)

    def resolve(self, name: str, overrides: Mapping[str, Any] | None = None) -> TopicOptions:
        """The effective options of topic ``name`` (``overrides``: those given to
        ``create_topic``, which win over every pattern); InvalidMessage for a bad one."""
        options = self.defaults
        for pattern, rule in self.patterns:
            if glob_match(pattern, name):
                options = options.merged(rule)
                break
        if overrides:
            options = options.merged(parse_options(overrides))
            try:
                check_combination(options)
            except ValueError as exc:
                raise InvalidMessage(f"bad topic options: {exc}") from None
        return options


#: The options every topic has a value for (the others may stay None: "off", or for the
#: transport defaults, "the server's setting for that transport").
_REQUIRED = frozenset(
    (
        "retention",
        "auto_create",
        "max_payload",
        "dedupe_window",
        "cache",
    )
)


def parse_options(values: Mapping[str, Any]) -> TopicOptions:
    """``values`` as TopicOptions; :class:`~fanwire.InvalidMessage` naming what is wrong."""
    try:
        return TopicOptions.model_validate(dict(values))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidMessage(f"bad topic options: {problems}") from None
