"""Errors raised by the broker, each carrying the protocol's error code (PROTOCOL.md)."""


class FanwireError(Exception):
    """Base class: ``code`` is the WebSocket error code, ``status`` the HTTP status."""

    code = "INTERNAL"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTopic(FanwireError):
    code = "INVALID_TOPIC"
    status = 400


class InvalidMessage(FanwireError):
    code = "INVALID_MESSAGE"
    status = 400


class TopicNotFound(FanwireError):
    code = "TOPIC_NOT_FOUND"
    status = 404


class PayloadTooLarge(FanwireError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class LimitReached(FanwireError):
    code = "LIMIT_REACHED"
    status = 429


class ShuttingDown(FanwireError):
    code = "INTERNAL"
    status = 503


class Unauthorized(FanwireError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(FanwireError):
    code = "FORBIDDEN"
    status = 403


class TooManyConnections(FanwireError):
    """The server holds ``max_connections`` clients already (HTTP 503)."""

    code = "LIMIT_REACHED"
    status = 503


class RateLimited(FanwireError):
    code = "RATE_LIMITED"
    status = 429
