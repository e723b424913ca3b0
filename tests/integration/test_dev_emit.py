"""The Workbench's emit endpoint: JSON only, this machine's own pages only, dev only."""

from __future__ import annotations

from typing import Any

import httpx2

from surge import create_app
from surge.testing import live_server

got: list[Any] = []


async def on_ping(input: Any, ctx: Any) -> None:
    got.append((input, ctx.trace_id))


STEPS = [({"type": "event", "name": "OnPing", "subscribes": ["ping"]}, on_ping)]


async def test_emit_endpoint_enqueues_for_subscribers_and_answers_the_ids() -> None:
    got.clear()
    app = create_app(steps=STEPS, workbench=True)
    async with live_server(app) as server, httpx2.AsyncClient() as client:
        response = await client.post(
            f"{server.url}/__surge/api/emit", json={"topic": "ping", "data": {"n": 1}}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["subscribers"] == ["OnPing"] and len(body["messageIds"]) == 1
        await app.wait_idle()
    assert got == [({"n": 1}, body["traceId"])]


async def test_emit_endpoint_refuses_other_sites_and_non_json_bodies() -> None:
    app = create_app(steps=STEPS, workbench=True)
    url_path = "/__surge/api/emit"
    async with live_server(app) as server, httpx2.AsyncClient() as client:
        url = f"{server.url}{url_path}"
        cross = await client.post(
            url, json={"topic": "ping"}, headers={"origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        rebound = await client.post(url, json={"topic": "ping"}, headers={"host": "evil.example"})
        assert rebound.status_code == 403
        form = await client.post(
            url, content=b'{"topic": "ping"}', headers={"content-type": "text/plain"}
        )
        assert form.status_code == 415
        no_topic = await client.post(url, json={"data": {}})
        assert no_topic.status_code == 400 and "emit needs a topic" in no_topic.text
        assert (await app.background.stats())["OnPing"].is_idle


async def test_emit_endpoint_is_not_served_without_the_workbench() -> None:
    app = create_app(steps=STEPS)
    async with live_server(app) as server, httpx2.AsyncClient() as client:
        response = await client.post(f"{server.url}/__surge/api/emit", json={"topic": "ping"})
        assert response.status_code in (404, 405)
