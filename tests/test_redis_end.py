"""Redis mode: a topic's ``end`` is the last thing of it an SSE client gets, whether the
stream reads it live or from the history in Redis (resume, ``last_n``), on the native
and ASGI paths of ``/stream`` and in a ``fastapi.sse`` route (tests/ai_app.py)."""

from __future__ import annotations

from test_ai_streams import ENV, HERE, body_to_end, client, frames, new_name, publish

from fanwire.testing.aio import run
from fanwire.testing.clients import SSEClient

PATHS = ("/stream", "/answers")


def test_nothing_published_after_the_end_reaches_an_sse_client(fanwire_server, redis_server):
    """The producer ends the answer and then (a bug of its own, or a late retry) publishes
    once more. Every SSE reader, on a node that reads it live and on nodes started later
    (whose history of the topic comes from Redis), gets the tokens, then ``end``, and
    never the message after it."""
    env = {**ENV, "FANWIRE_REDIS_URL": redis_server.url}
    a = fanwire_server(env=env, app="ai_app:app", app_dir=str(HERE), name="ai_a")
    topic, two = new_name(), new_name()

    async def produce():
        async with client(a) as ha:
            for name in (topic, two):
                assert (await ha.post("/topics", json={"name": name})).status_code == 201
            async with SSEClient(a.url, topics=[topic]) as live:
                ids = [await publish(ha, topic, {"token": t}) for t in "abc"]
                await ha.post(f"/end/{topic}")
                await publish(ha, topic, {"token": "after the end"})
                await live.read_to_end(timeout=20)
            assert live.ids == ids and live.frames[-1].event == "end"
            await publish(ha, two, {"token": "x"})
            await ha.post(f"/end/{two}")
            await publish(ha, two, {"token": "after the end"})
            return ids

    ids = run(produce(), timeout=60)
    late = fanwire_server(env=env, app="ai_app:app", app_dir=str(HERE), name="ai_late")
    asgi_env = {**env, "FANWIRE_NATIVE_SSE": "false"}
    late_asgi = fanwire_server(env=asgi_env, app="ai_app:app", app_dir=str(HERE), name="ai_asgi")

    async def read_history():
        for srv in (late, late_asgi):
            async with client(srv) as http:
                for path in PATHS:
                    params = {"topic": topic}
                    resumed = await body_to_end(
                        http, path, params=params, headers={"Last-Event-ID": ids[0]}
                    )
                    got = [(f.get("id"), f.get("event")) for f in frames(resumed)]
                    assert got == [(ids[1], "message"), (ids[2], "message"), (None, "end")], (
                        srv.name,
                        path,
                    )
                    whole = await body_to_end(http, path, params={**params, "last_n": 100})
                    assert [f.get("id") for f in frames(whole)] == [*ids, None], (srv.name, path)
                    # Two ended topics on one stream: both histories, merged, each cut
                    # at its end.
                    both = await body_to_end(
                        http, path, params={"topic": [topic, two], "last_n": 100}
                    )
                    datas = [f.get("data", "") for f in frames(both)]
                    assert not any("after the end" in d for d in datas), (srv.name, path, datas)
                    assert [f.get("event") for f in frames(both)].count("end") == 2

    run(read_history(), timeout=120)
