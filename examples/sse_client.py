"""Read a fanwire SSE stream with httpx-sse, resuming by id after any disconnect.

    python examples/sse_client.py --url http://127.0.0.1:8000 --topic events --count 10

Prints one line per message (``id topic data``) and exits after ``--count`` messages
(0: forever). When the stream ends or breaks, it reconnects with ``Last-Event-ID`` so no
message is missed or repeated while the server still retains it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import httpx
from httpx_sse import connect_sse


def stream(url: str, topics: list[str], count: int, last_n: int) -> int:
    """Print messages until ``count`` arrived; returns how many were printed."""
    last_id: str | None = None
    seen = 0
    with httpx.Client(timeout=httpx.Timeout(10.0, read=None), trust_env=False) as client:
        while count == 0 or seen < count:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            params = [("topic", t) for t in topics]
            if last_id is None and last_n:
                params.append(("last_n", str(last_n)))
            try:
                with connect_sse(
                    client, "GET", url + "/stream", params=params, headers=headers
                ) as source:
                    source.response.raise_for_status()
                    for event in source.iter_sse():
                        if not event.data:  # the opening `retry:` line
                            continue
                        if event.event in ("heartbeat", "gap", "topic_deleted", "shutdown"):
                            print(f"# {event.event} {event.data}", file=sys.stderr)
                            continue
                        message = json.loads(event.data)
                        last_id = event.id
                        seen += 1
                        print(event.id, message["topic"], json.dumps(message["data"]), flush=True)
                        if count and seen >= count:
                            return seen
            except (httpx.TransportError, httpx.HTTPStatusError) as error:
                print(f"# reconnecting after: {error!r}", file=sys.stderr)
            time.sleep(1.0)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--topic", action="append", help="repeatable; default events")
    parser.add_argument("--count", type=int, default=10, help="messages to print (0: forever)")
    parser.add_argument("--last-n", type=int, default=0, help="replay N retained messages")
    args = parser.parse_args()
    stream(args.url.rstrip("/"), args.topic or ["events"], args.count, args.last_n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
