"""The read-only admin view: off without $SURGE_ADMIN_TOKEN (404), 401 without or with a wrong
token (Bearer or Basic), and what it shows: connections, subscriptions per stream, top groups by
subscribers, queue states, as JSON and as an HTML page."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx2
import pytest

import surge
from abuse.logscan import register_token
from surge import Config, EventConfig, StreamConfig
from surge.errors import ConfigError
from surge.testing import live_server

from .streamclient import connect

STREAMS = [
    StreamConfig(name="todo", schema={"type": "object", "properties": {}}),
    StreamConfig(name="chat", schema={"type": "object", "properties": {}}),
]
TOKEN = "admin-t0ken-for-the-tests-only"
API = "/__surge/admin/api"


def basic(password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()}


async def test_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SURGE_ADMIN_TOKEN", raising=False)
    app = surge.create_app(streams=STREAMS)
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        for path in ("/__surge/admin/", API):
            response = await http.get(path, headers={"authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 404


async def test_a_short_token_is_refused_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGE_ADMIN_TOKEN", "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        surge.create_app(streams=STREAMS)


async def test_without_the_token_or_with_a_wrong_one_it_is_401(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_token(TOKEN)
    monkeypatch.setenv("SURGE_ADMIN_TOKEN", TOKEN)
    app = surge.create_app(streams=STREAMS)
    wrong: list[dict[str, str]] = [
        {},
        {"authorization": "Bearer not-the-token-at-all-no"},
        {"authorization": f"Bearer {TOKEN}x"},
        {"authorization": f"Bearer {TOKEN[:-1]}"},
        {"authorization": TOKEN},
        basic("wrong-password-entirely"),
        {"authorization": "Basic !!!not-base64"},
    ]
    async with live_server(app) as srv, httpx2.AsyncClient(base_url=srv.url, timeout=5) as http:
        for headers in wrong:
            for path in ("/__surge/admin/", API, "/__surge/admin/other"):
                response = await http.get(path, headers=headers)
                assert response.status_code == 401, (headers, path)
                assert response.headers["www-authenticate"].startswith("Basic ")
                assert TOKEN not in response.text
        ok = await http.get(API, headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert (await http.get(API, headers=basic(TOKEN))).status_code == 200
        refused = await http.post(API, headers={"authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 405  # read-only


async def test_it_shows_connections_subscriptions_groups_and_queues(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_token(TOKEN)
    monkeypatch.setenv("SURGE_ADMIN_TOKEN", TOKEN)
    release = asyncio.Event()
    started = asyncio.Event()

    async def hold(input: Any, ctx: Any) -> None:
        started.set()
        await release.wait()

    app = surge.create_app(
        streams=STREAMS,
        config=Config(metrics=True),
        steps=[(EventConfig(name="Hold", subscribes=["hold"], concurrency=1), hold)],
    )
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with (
        live_server(app) as srv,
        httpx2.AsyncClient(base_url=srv.url, timeout=5, headers=auth) as http,
        connect(srv.ws_url) as a,
        connect(srv.ws_url) as b,
        connect(srv.ws_url, stream="chat") as c,
    ):
        await a.join_synced("busy")
        await a.join_synced("quiet", subscription_id="second")
        await b.join_synced("busy")
        await b.join_synced("busy", id="item-1", subscription_id="item")
        await c.join_synced("room")
        for _ in range(2):
            await srv.app.emit({"topic": "hold", "data": {}})
        async with asyncio.timeout(10):
            await started.wait()
        data = (await http.get(API)).json()
        page = await http.get("/__surge/admin/")
        release.set()
        await srv.app.wait_idle()

    assert data["instance"]["ready"] is True
    assert data["instance"]["store"] == "MemoryStreamAdapter"
    assert data["connections"]["open"] == 3
    busiest = data["connections"]["most_subscriptions"]
    assert [entry["subscriptions"] for entry in busiest] == [2, 2, 1]
    assert data["subscriptions"] == {"total": 5, "by_stream": {"chat": 1, "todo": 4}}
    assert data["top_groups"][0] == {"stream": "todo", "group": "busy", "subscriptions": 3}
    assert {(g["stream"], g["group"], g["subscriptions"]) for g in data["top_groups"][1:]} == {
        ("todo", "quiet", 1),
        ("chat", "room", 1),
    }
    assert data["queues"] == [{"step": "Hold", "ready": 1, "delayed": 0, "in_flight": 1, "dead": 0}]
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "busy" in page.text and "Hold" in page.text
    assert TOKEN not in page.text
