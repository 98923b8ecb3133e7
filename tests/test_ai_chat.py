"""examples/ai_chat: a page that shows an answer growing, in headless Chromium (reload
mid-answer, a second tab), in memory and with two uvicorn workers over Redis."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import orjson
import pytest

from fanwire.testing.aio import run

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ai_chat"
COUNT = 60
ENV = {"AI_CHAT_TOKENS": str(COUNT), "AI_CHAT_DELAY": "0.05", "FANWIRE_DEMO_RATE": "0"}
PROMPT = "What does fanwire do?"


def generator_text(prompt: str) -> list[str]:
    spec = importlib.util.spec_from_file_location("ai_chat_tokens", EXAMPLE / "tokens.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tokens(prompt, COUNT)


@pytest.fixture(params=["memory", "redis-2-workers"])
def chat_server(request, fanwire_server):
    if request.param == "memory":
        return fanwire_server(env=ENV, app="app:app", app_dir=str(EXAMPLE), name="ai_chat")
    redis = request.getfixturevalue("redis_server")
    env = {**ENV, "FANWIRE_REDIS_URL": redis.url}
    return fanwire_server(
        env=env, app="app:app", app_dir=str(EXAMPLE), args=("--workers", "2"), name="ai_chat2"
    )


def test_reload_mid_answer_resumes_and_a_second_tab_sees_the_same(chat_server, chromium_browser):
    want = generator_text(PROMPT)
    context = chromium_browser.new_context()
    try:
        page = context.new_page()
        page.goto(chat_server.url + "/")
        page.fill("#prompt", PROMPT)
        page.click("button")
        page.wait_for_function("window.chat.tokens.length >= 15", timeout=20_000)
        assert not page.evaluate("window.chat.done")  # mid-answer
        second = context.new_page()  # its own sessionStorage: the whole answer so far
        second.goto(page.url)
        page.reload()
        page.wait_for_function("window.chat.done", timeout=30_000)
        second.wait_for_function("window.chat.done", timeout=30_000)
        for tab in (page, second):
            state = tab.evaluate("window.chat")
            assert "".join(state["tokens"]) == "".join(want)
            assert len(state["ids"]) == len(set(state["ids"])) == COUNT  # no token twice
            assert tab.locator("#answer").text_content() == "".join(want)
        assert page.evaluate("window.chat.resumed")  # the reload resumed after its last id
        assert not second.evaluate("window.chat.resumed")
    finally:
        context.close()
    assert "last_event_id=" in chat_server.log_text()


def test_http_resume_after_any_token_on_any_worker(chat_server):
    """Over plain HTTP (both workers answer new connections): the whole answer, then a
    resume after a token in the middle gives exactly the rest, then ``end``."""
    want = generator_text("resume")

    async def main() -> None:
        async with httpx.AsyncClient(base_url=chat_server.url, timeout=30, trust_env=False) as http:
            created = (await http.post("/chat", json={"prompt": "resume"})).json()
            full = await frames(http, created["stream_url"] + "?replay=1")
            assert [f.get("event") for f in full] == ["message"] * COUNT + ["end"]
            assert [orjson.loads(f["data"])["data"]["token"] for f in full[:-1]] == want
            ids = [f["id"] for f in full[:-1]]
            for k in (0, 29, COUNT - 1):
                rest = await frames(http, created["stream_url"], {"Last-Event-ID": ids[k]})
                assert [f.get("id") for f in rest[:-1]] == ids[k + 1 :]
                assert rest[-1]["event"] == "end"
            missing = await http.get("/chat/nope/stream")
            assert missing.status_code == 404

    run(main())


async def frames(http: httpx.AsyncClient, url: str, headers=None) -> list[dict[str, str]]:
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        body = (await response.aread()).decode()
    out = []
    for block in body.split("\n\n"):
        if block and not block.startswith(":"):
            out.append(dict(line.split(": ", 1) for line in block.split("\n")))
    return out
