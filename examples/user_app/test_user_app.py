"""Stress test of the ticker app (app.py), as its authors would write it: 500 SSE and
500 WebSocket clients, one stalled client of each kind, 1,000 quotes posted to the app's
own route; every client must get every quote, in order, whatever the stalled ones do."""

from pathlib import Path

from fanwire.testing.stress import stress

HERE = Path(__file__).resolve().parent


def quote(seq):
    """Publish through the app's own route; the feed's ``seq`` travels in every quote."""
    return "/quotes", {"symbol": "ACME", "price": 100 + seq / 100, "seq": seq}


def test_every_client_gets_every_quote_in_order(fanwire_server):
    server = fanwire_server(app="app:app", app_dir=HERE)
    scale = {"sse_clients": 500, "ws_clients": 500, "messages": 1_000, "stalled": 1}
    report = stress(server, topic="quotes", publish=quote, **scale)
    print(report.summary())
    report.assert_all_delivered_in_order()
    report.assert_stalled_did_not_hurt()
