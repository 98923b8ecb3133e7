"""A real browser (headless Chromium): the dashboard, and an EventSource page that
resumes after the server restarts."""

from pathlib import Path

import orjson
import pytest
from websockets.sync.client import connect

from fanwire.server.demo import Ticker

EVENTS_ROW = "document.querySelector('#topics tbody tr[data-topic=\"events\"]')"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def page(chromium_browser):
    context = chromium_browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def test_dashboard_shows_the_live_feed_and_stats(fanwire_server, page, tmp_path):
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "20"})
    page.goto(srv.url + "/")
    page.wait_for_function("document.querySelectorAll('#feed li').length >= 5", timeout=15_000)
    page.wait_for_function(
        "[...document.querySelectorAll('#topics tbody td')]"
        ".some(td => td.textContent === 'events')",
        timeout=15_000,
    )
    assert page.locator("#status").text_content() == "live"
    assert "symbol" in page.locator("#feed li").first.text_content()
    page.wait_for_function(
        "document.getElementById('connection-count').textContent.startsWith('1 SSE')",
        timeout=15_000,
    )
    row = page.locator("#topics tbody tr").filter(has_text="events").locator("td")
    row = row.all_text_contents()
    assert row[0] == "events" and int(row[3]) >= 1  # our own EventSource subscribes
    page.screenshot(path=str(tmp_path / "dashboard.png"))


def _presence_cell(page):
    return page.evaluate(f"{EVENTS_ROW}.children[4].textContent")


def _presence_is(page, count):
    page.wait_for_function(f"{EVENTS_ROW}.children[4].textContent === '{count}'", timeout=15_000)


def test_console_draws_charts_ticker_and_presence(fanwire_server, page, tmp_path):
    srv = fanwire_server(env={"FANWIRE_DEMO_RATE": "20"})
    page.goto(srv.url + "/")
    # every chart has drawn a line through several samples
    page.wait_for_function(
        "Object.values(window.fanwireConsole.charts).every(c => c.drawn >= 3)", timeout=20_000
    )
    page.wait_for_function(
        "document.querySelectorAll('#ticker tbody tr').length >= 3", timeout=20_000
    )
    symbols = page.eval_on_selector_all(
        "#ticker tbody tr", "rows => rows.map(r => r.dataset.symbol)"
    )
    assert set(symbols) <= set(Ticker.SYMBOLS) and len(symbols) >= 3
    prices = page.eval_on_selector_all(
        "#ticker tbody tr td:nth-child(2)", "t => t.map(c => c.textContent)"
    )
    assert all(float(p) > 0 for p in prices)
    rates = page.evaluate("window.fanwireConsole.samples.map(s => s.published)")
    assert max(rates) > 0  # the published line is not flat at zero
    page.wait_for_function(f"{EVENTS_ROW} !== null", timeout=15_000)
    assert _presence_cell(page) == "0"
    with connect(srv.ws_url) as ws:
        ws.recv()  # info connected
        join = {"type": "subscribe", "topic": "events", "presence": {"name": "test"}}
        ws.send(orjson.dumps(join).decode())
        _presence_is(page, 1)  # the console's own EventSource is no member
    _presence_is(page, 0)
    page.screenshot(path=str(tmp_path / "console.png"), full_page=True)


def test_eventsource_page_resumes_after_a_server_restart(fanwire_server, page):
    env = {
        "FANWIRE_DEMO_RATE": "20",
        "FANWIRE_CORS_ORIGINS": '["*"]',
        "FANWIRE_SSE_RETRY_MS": "300",
    }
    srv = fanwire_server(env=env)
    page.goto(f"{(EXAMPLES / 'browser.html').as_uri()}?server={srv.url}&topic=events")
    page.wait_for_function("window.fanwireExample.count >= 5", timeout=15_000)
    before = page.evaluate("window.fanwireExample.count")
    srv.restart()
    # The old id belongs to the previous run: a gap notice, then every retained message.
    page.wait_for_function("window.fanwireExample.gaps >= 1", timeout=30_000)
    page.wait_for_function(f"window.fanwireExample.count >= {before + 5}", timeout=30_000)
    state = page.evaluate("window.fanwireExample")
    assert len(state["ids"]) == len(set(state["ids"]))  # no duplicate
    epochs = [i.split("-")[0] for i in state["ids"]]
    assert len(set(epochs)) == 2 and epochs == sorted(epochs, key=epochs.index)
    new = [i for i in state["ids"] if i.split("-")[0] == epochs[-1]]
    seqs = [int(i.split("-")[1]) for i in new]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, no gap
    assert seqs[0] == 1  # everything the restarted server published was replayed


def test_console_in_redis_mode_shows_the_nodes(fanwire_server, redis_server, page):
    env = {"FANWIRE_DEMO_RATE": "20", "FANWIRE_REDIS_URL": redis_server.url}
    a, b = (fanwire_server(env=env) for _ in range(2))
    page.goto(a.url + "/")
    page.wait_for_function(
        "document.getElementById('nodes').textContent.startsWith('2 nodes')", timeout=20_000
    )
    assert "(this)" in page.locator("#nodes").text_content()
    # the demo (fed by whichever node holds its lease) reaches the price board
    page.wait_for_function(
        "document.querySelectorAll('#ticker tbody tr').length >= 3", timeout=20_000
    )
    with connect(b.ws_url) as ws:  # a member on the other node
        ws.recv()
        join = {"type": "subscribe", "topic": "events", "presence": True}
        ws.send(orjson.dumps(join).decode())
        _presence_is(page, 1)
