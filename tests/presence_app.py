"""A fanwire server whose occupancy hooks publish what they saw to the topic ``hooks``
(tests/test_presence*.py count the transitions there, from any node)."""

import asyncio
import os

from fanwire.server.app import create_app


def create():
    app = create_app()
    broker = app.state.broker
    node = os.getpid()

    async def occupied(topic):
        await broker.acreate_topic("hooks")
        await broker.apublish("hooks", {"hook": "occupied", "topic": topic, "node": node})

    pending = set()

    def vacated(topic):  # a sync hook: schedules its publish
        task = asyncio.ensure_future(
            broker.apublish("hooks", {"hook": "vacated", "topic": topic, "node": node})
        )
        pending.add(task)
        task.add_done_callback(pending.discard)

    broker.on_occupied("room*", occupied)
    broker.on_vacated("room*", vacated)
    return app
