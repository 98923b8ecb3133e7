"""fanwire: real-time fan-out (SSE and WebSocket) for FastAPI, with a C++ core."""

from ._core import StreamEnd
from ._version import __version__ as __version__
from .broker import Broker, Published, Subscription, TopicInfo
from .enums import Mode, Policy
from .errors import (
    FanwireError,
    InvalidMessage,
    InvalidTopic,
    LimitReached,
    PayloadTooLarge,
    ShuttingDown,
    TopicNotFound,
)
from .server.app import create_app, lifespan, router
from .settings import Settings

__all__ = [
    "Broker",
    "FanwireError",
    "InvalidMessage",
    "InvalidTopic",
    "LimitReached",
    "Mode",
    "PayloadTooLarge",
    "Policy",
    "Published",
    "Settings",
    "ShuttingDown",
    "StreamEnd",
    "Subscription",
    "TopicInfo",
    "TopicNotFound",
    "create_app",
    "lifespan",
    "router",
]
