"""JWT auth (PROTOCOL.md, "Auth"): off by default; HS256 or RS256 bearer tokens.

A token's claims ``subscribe`` and ``publish`` are lists of topic patterns (``*`` matches
any run of characters); ``admin: true`` allows creating and deleting topics.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from ..errors import Forbidden, Unauthorized
from ..names import glob_match
from ..settings import Settings


def _matches(patterns: tuple[str, ...], topic: str) -> bool:
    return any(glob_match(p, topic) for p in patterns)


@dataclass(frozen=True)
class Claims:
    """What the holder of a token may do; ``everything()`` when auth is off."""

    subscribe: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    admin: bool = False
    subject: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    expires: int | None = None  # the token's ``exp`` (epoch seconds)

    @classmethod
    def everything(cls) -> Claims:
        return cls(subscribe=("*",), publish=("*",), admin=True)

    def check_fresh(self) -> None:
        """Raise Unauthorized once the token expired: a WebSocket outlives its token, so
        each subscribe and publish checks again (as PyJWT does: expired at ``exp``)."""
        if self.expires is not None and time.time() >= self.expires:
            raise Unauthorized("token has expired")

    def check_subscribe(self, topic: str) -> None:
        self.check_fresh()
        if not _matches(self.subscribe, topic):
            raise Forbidden(f"token does not allow subscribing to {topic!r}")

    def check_publish(self, topic: str) -> None:
        self.check_fresh()
        if not _matches(self.publish, topic):
            raise Forbidden(f"token does not allow publishing to {topic!r}")

    def check_admin(self) -> None:
        self.check_fresh()
        if not self.admin:
            raise Forbidden("token does not allow creating or deleting topics")


def _patterns(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return ()
    return tuple(value)


class Authenticator:
    """Turns a request's bearer token into :class:`Claims` (or raises Unauthorized)."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth_enabled
        self.keys: dict[str, str] = {}
        for alg in settings.jwt_algorithms:
            key = settings.jwt_secret if alg.startswith("HS") else settings.jwt_public_key
            if key:
                self.keys[alg] = key

    @staticmethod
    def token_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The token of ``Authorization: Bearer`` or of the ``access_token`` query parameter."""
        header = headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return query.get("access_token") or None

    def claims(self, token: str | None) -> Claims:
        """Verify ``token``; everything is allowed when auth is off."""
        if not self.enabled:
            return Claims.everything()
        if not token:
            raise Unauthorized("a bearer token is required")
        try:
            alg = jwt.get_unverified_header(token).get("alg", "")
            # The header is unverified: ``alg`` may be any JSON value (a list is unhashable,
            # and the repr of a deeply nested one overflows the stack).
            if not isinstance(alg, str):
                raise Unauthorized("token algorithm must be a string")
            if alg not in self.keys:
                raise Unauthorized(f"token algorithm {alg!r} is not accepted")
            payload = jwt.decode(token, self.keys[alg], algorithms=[alg])
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        return Claims(
            subscribe=_patterns(payload.get("subscribe")),
            publish=_patterns(payload.get("publish")),
            admin=payload.get("admin") is True,
            subject=payload.get("sub") if isinstance(payload.get("sub"), str) else None,
            extra=payload,
            # jwt.decode checked that int() takes it
            expires=int(payload["exp"]) if "exp" in payload else None,
        )
