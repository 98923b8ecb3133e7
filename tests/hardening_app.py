"""An app for tests/test_hardening.py whose broker has a bug: publishing to ``bug`` raises
``RuntimeError``, as a real bug in fanwire would. Run as ``uvicorn hardening_app:app``."""

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from fanwire import Broker, lifespan, router
from fanwire.broker import Published
from fanwire.settings import Settings


class BuggyBroker(Broker):
    # Both publish entry points: a WebSocket publish in memory takes the synchronous one
    # (server/ws.py quick_publish), other paths the async one.
    def publish_message(self, topic: str, data: Any, event: str | None = None) -> Published:
        if topic == "bug":
            raise RuntimeError("injected bug")
        return super().publish_message(topic, data, event)

    async def apublish(self, topic: str, data: Any, event: str | None = None) -> Published:
        if topic == "bug":
            raise RuntimeError("injected bug")
        return await super().apublish(topic, data, event)


broker = BuggyBroker(auto_create=True)
settings = Settings(demo_rate=0, auto_create_topics=True)


@asynccontextmanager
async def app_lifespan(app: FastAPI):
    async with lifespan(broker, settings):
        yield


app = FastAPI(lifespan=app_lifespan)
app.include_router(router(broker, settings))
