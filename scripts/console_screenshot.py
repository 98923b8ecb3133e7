"""Make docs/console.png: a server with the demo feed, a few clients (members, a lagging
one, a publisher) and the console open in headless Chromium for a minute.

    python scripts/console_screenshot.py [docs/console.png]
"""

import asyncio
import sys
import threading
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from fanwire.testing.browser import launch_chromium
from fanwire.testing.clients import SSEClient, WSClient
from fanwire.testing.servers import FanwireServer

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console.png")
SECONDS = 75


async def traffic(srv: FanwireServer, stop: threading.Event) -> None:
    http = httpx.AsyncClient(base_url=srv.url, trust_env=False)
    for name in ("orders", "chat.lobby"):
        await http.post("/topics", json={"name": name})
    members = []
    for n, name in enumerate(("ada", "grace", "linus")):
        ws = WSClient(srv.ws_url)
        await ws.connect()
        await ws.request({"type": "subscribe", "topic": "chat.lobby", "presence": {"name": name}})
        if n < 2:
            await ws.request({"type": "subscribe", "topic": "events", "presence": True})
        members.append(ws)
    readers = [SSEClient(srv.url, topics=["orders"], keep=False) for _ in range(4)]
    for reader in readers:
        await reader.connect()
    slow = SSEClient(srv.url, topics=["orders"], stalled=True, receive_buffer=4096, keep=False)
    await slow.connect()
    n = 0
    stalled = [slow]
    while not stop.is_set():
        if n and n % 600 == 0:  # now and then a new stalled client, closed as a slow consumer
            stalled.append(SSEClient(srv.url, topics=["orders"], stalled=True, keep=False))
            await stalled[-1].connect()
        for _ in range(5):
            await http.post("/topics/orders/messages", json={"data": {"n": n, "pad": "x" * 4000}})
            n += 1
        await asyncio.sleep(0.05)
    for client in (*members, *readers, *stalled):
        await client.close()
    await http.aclose()


def main() -> None:
    srv = FanwireServer(env={"FANWIRE_DEMO_RATE": "20"}).start()
    stop = threading.Event()
    worker = threading.Thread(target=lambda: asyncio.run(traffic(srv, stop)))
    try:
        worker.start()
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.goto(srv.url + "/")
            page.wait_for_timeout(SECONDS * 1000)
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT), full_page=True)
            browser.close()
    finally:
        stop.set()
        worker.join(30)
        srv.stop()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
