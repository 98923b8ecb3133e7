"""fanwire: real-time fan-out (SSE and WebSocket) for FastAPI, with a C++ core."""

from .app import create_app, lifespan, router
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
    "Subscription",
    "TopicInfo",
    "TopicNotFound",
    "create_app",
    "lifespan",
    "router",
]
__version__ = "0.1.0"
