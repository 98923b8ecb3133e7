"""Subscribe and publish over fanwire's WebSocket with the ``websockets`` library.

    python examples/ws_client.py --url ws://127.0.0.1:8000/ws --topic events --count 5

Subscribes to ``--topic`` (replaying ``--last-n`` retained messages), publishes one
message of its own when ``--publish`` is given, prints each event as ``id topic data``
and exits after ``--count`` events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def run(url: str, topic: str, count: int, last_n: int, publish: str | None) -> int:
    """Print ``count`` events of ``topic``; returns how many were printed."""
    async with connect(url, ping_interval=20) as ws:
        hello = json.loads(await ws.recv())
        print(f"# connected as {hello['client_id']}", file=sys.stderr)
        request = {"type": "subscribe", "topic": topic, "last_n": last_n, "request_id": "sub"}
        await ws.send(json.dumps(request))
        seen = 0
        async for text in ws:
            message = json.loads(text)
            kind = message["type"]
            if kind == "ack" and message.get("request_id") == "sub" and publish is not None:
                body = {
                    "type": "publish",
                    "topic": topic,
                    "data": json.loads(publish),
                    "request_id": "pub",
                }
                await ws.send(json.dumps(body))
            elif kind == "error":
                print(f"# error {message['code']}: {message['message']}", file=sys.stderr)
                return seen
            elif kind == "event":
                seen += 1
                print(
                    message["message_id"], message["topic"], json.dumps(message["data"]), flush=True
                )
                if seen >= count:
                    return seen
            elif kind == "info":
                print(f"# info {message['message']}", file=sys.stderr)
        return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000/ws")
    parser.add_argument("--topic", default="events")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--last-n", type=int, default=0)
    parser.add_argument("--publish", help="a JSON value to publish once subscribed")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.topic, args.count, args.last_n, args.publish))
    return 0


if __name__ == "__main__":
    sys.exit(main())
