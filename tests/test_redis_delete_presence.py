"""Redis mode: a topic deleted on any node ends its presence members on every node at
once, including a member on a native SSE stream of several topics (which goes on)."""

import pytest
from redis_support import NODE_ENV, create_everywhere, http_client, publish, topic_name, until

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient

#: Long enough that the presence heartbeat's sweep (a third of it) cannot be what ends
#: the membership within these tests' waits.
TTL = 300.0


async def presence_of(http, srv, topic):
    response = await http.get(f"{srv.url}/topics/{topic}/presence")
    assert response.status_code == 200, response.text
    return response.json()["members"]


async def occupancy_of(http, srv, topic):
    rows = (await http.get(srv.url + "/topics")).json()["topics"]
    return next((r["subscribers"] for r in rows if r["name"] == topic), None)


async def stuck(http, srv, topic):
    """Whether a subscriber of ``topic`` on ``srv`` has messages waiting (its native
    writer cannot take them: the client's socket is full)."""
    rows = (await http.get(srv.url + "/stats")).json()["worst_subscribers"]
    return any(r["topic"] == topic and r["pending"] >= 5 for r in rows)


@pytest.mark.parametrize(
    ("where", "stalled"),
    [("other node", True), ("same node", True), ("other node", False)],
    ids=["other-node-stalled", "same-node-stalled", "other-node-reading"],
)
def test_a_deleted_topic_ends_a_multi_topic_native_streams_membership(
    where, stalled, fanwire_server, redis_server
):
    """B holds a native SSE stream of topics x and y with presence (its client reading,
    or stalled with its socket full). x is deleted (on B, or on A), then created anew
    under the same name: at once, the new x has no member and no subscriber on either
    node (not at the presence heartbeat's sweep), while the stream goes on with y."""
    env = {**NODE_ENV, "FANWIRE_REDIS_URL": redis_server.url, "FANWIRE_PRESENCE_TTL": str(TTL)}
    a, b = (fanwire_server(env=env) for _ in range(2))
    x, y = topic_name("x"), topic_name("y")
    deleter = b if where == "same node" else a
    pad = "x" * 30_000

    async def main():
        async with http_client() as http:
            for topic in (x, y):
                await create_everywhere(http, topic, a, b)
            sse = SSEClient(
                b.url,
                topics=[x, y],
                params={"presence": "1"},
                policy="drop_oldest",
                receive_buffer=65536 if stalled else None,
                stalled=stalled,
            )
            async with sse:
                for srv in (a, b):

                    async def listed(srv=srv):
                        return len(await presence_of(http, srv, x)) == 1

                    await until(listed, what=f"{srv.url} listing the member of {x}")
                for n in range(400 if stalled else 0):
                    await publish(http, a, y, {"n": n, "pad": pad})
                    if n >= 20 and await stuck(http, b, y):
                        break
                if stalled:
                    assert await stuck(http, b, y), "the stalled stream never backed up"
                assert (await http.delete(f"{deleter.url}/topics/{x}")).status_code == 204
                await create_everywhere(http, x, deleter, a, b)
                for srv in (a, b):

                    async def vacated(srv=srv):
                        gone = await presence_of(http, srv, x) == []
                        return gone and await occupancy_of(http, srv, x) == 0

                    await until(vacated, what=f"{srv.url}: no member left in the new {x}")
                    assert len(await presence_of(http, srv, y)) == 1  # y's membership stays
                if stalled:
                    sse.resume()
                await sse.read_until_event("topic_deleted", timeout=30)
                assert not sse.ended

    run(main(), timeout=120)
