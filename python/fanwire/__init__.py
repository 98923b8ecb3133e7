"""fanwire: real-time fan-out (SSE and WebSocket) for FastAPI, with a C++ core."""

from .app import create_app, router  # noqa: F401  (public: create_app, router)
from .broker import Broker, Published, Subscription, TopicInfo
from .errors import (
    FanwireError,
    InvalidMessage,
    InvalidTopic,
    LimitReached,
    PayloadTooLarge,
    ShuttingDown,
    TopicNotFound,
)

__all__ = [
    "Broker",
    "FanwireError",
    "InvalidMessage",
    "InvalidTopic",
    "LimitReached",
    "PayloadTooLarge",
    "Published",
    "ShuttingDown",
    "Subscription",
    "TopicInfo",
    "TopicNotFound",
]
__version__ = "0.1.0"
