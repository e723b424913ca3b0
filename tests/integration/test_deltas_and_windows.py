"""Deltas and windowed groups end to end (protocol.md sections 4 and 5), on real sockets.

A 1,000-token answer appended with ``update(ops)``: a subscription that asked for deltas gets
``patch`` frames, one that did not gets whole items, Surge's client applies the patches, and all
of them end with the stored item; the bytes per token of both ways are measured. A windowed
stream syncs its newest items with a cursor, pages back over the WebSocket (only for
subscriptions the connection holds) and through ``stream.get_group``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from conftest import require_component
from redis_server import REDIS_TEST_URL, drop_redis_keys, redis_is_up
from surge import StreamConfig, Subscription, create_app
from surge.client import SubscriptionError, connect
from surge.client.frames import decode_server_frame
from surge.protocol.codes import UNKNOWN_SUBSCRIPTION
from surge.server.app import SurgeApp
from surge.streams.ops import apply_ops
from surge.streams.stores.file import FileStreamAdapter
from surge.streams.stores.redis import RedisStreamAdapter
from surge.testing import LiveServer, live_server

from .streamclient import StreamClient, is_error_event
from .streamclient import connect as raw_connect

pytestmark = pytest.mark.timeout(120)

TOKENS = 1000
WAIT = 30.0  # generous: both cores may be busy with other suites


class Message(BaseModel):
    id: str
    role: str
    content: str = ""
    status: str = "streaming"


def deny_secret(sub: Subscription, ctx: Any) -> bool:
    return sub.groupId != "secret"


def chat_app(store: Path) -> SurgeApp:
    return create_app(
        streams=[
            StreamConfig(name="chat", schema=Message),
            StreamConfig(name="history", schema=Message, sync_limit=5, can_access=deny_secret),
        ],
        adapter=FileStreamAdapter(store, synchronous="normal"),
    )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(chat_app(tmp_path / "store")) as srv:
        yield srv


class Recorder:
    """A raw WebSocket subscriber of one item's frames, keeping its own copy of the item."""

    def __init__(self, client: StreamClient) -> None:
        self.client = client
        self.item: dict[str, Any] | None = None
        self.bytes_per_kind: dict[str, int] = {}
        self.frames_per_kind: dict[str, int] = {}

    async def follow(self, item_id: str, until: dict[str, Any]) -> None:
        """Apply frames of ``item_id`` until the item has the ``until`` values."""
        deadline = time.monotonic() + WAIT
        while self.item is None or any(self.item.get(k) != v for k, v in until.items()):
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                raw = await self.client.ws.recv()
            assert isinstance(raw, str)
            frame = json.loads(raw)
            if "event" not in frame:  # the compact patch form: {"timestamp":..,"patch":[..]}
                decoded = decode_server_frame(raw)
                kind, frame_id, data = "compact", decoded.id, decoded.data
            else:
                kind, frame_id, data = frame["event"]["type"], frame.get("id"), None
            if frame_id != item_id or kind == "sync":
                continue
            self.bytes_per_kind[kind] = self.bytes_per_kind.get(kind, 0) + len(raw.encode())
            self.frames_per_kind[kind] = self.frames_per_kind.get(kind, 0) + 1
            if kind in ("patch", "compact"):
                assert self.item is not None, "a patch before the item was known"
                ops = frame["event"]["data"]["ops"] if data is None else data["ops"]
                self.item = apply_ops(dict(self.item), ops, item_id)
            else:
                self.item = frame["event"]["data"]


async def test_a_1000_token_answer_ends_identical_for_delta_plain_and_surge_clients(
    server: LiveServer,
) -> None:
    chat = server.app.runtime.streams.chat
    async with (
        raw_connect(server.ws_url, stream="chat") as delta_ws,
        raw_connect(server.ws_url, stream="chat") as plain_ws,
        raw_connect(server.ws_url, stream="chat") as compact_ws,
        connect(server.ws_url) as surge_client,
        connect(server.ws_url, deltas=False) as surge_plain,
    ):
        join = {"streamName": "chat", "groupId": "c1", "subscriptionId": "d", "deltas": True}
        await delta_ws.send_json({"type": "join", "data": join})
        assert (await delta_ws.recv())["event"]["type"] == "sync"
        await compact_ws.send_json({"type": "join", "data": {**join, "compact": True}})
        assert (await compact_ws.recv())["event"]["type"] == "sync"
        await plain_ws.join_synced("c1")
        group = await surge_client.subscribe_group("chat", "c1")
        item = await surge_client.subscribe_item("chat", "c1", "m1")
        plain_group = await surge_plain.subscribe_group("chat", "c1")
        delta, plain, compact = Recorder(delta_ws), Recorder(plain_ws), Recorder(compact_ws)

        await chat.set("c1", "m1", {"id": "m1", "role": "assistant"})
        for n in range(TOKENS):
            await chat.update(
                "c1", "m1", [{"type": "append", "path": "content", "value": f" w{n}"}]
            )
        await chat.update("c1", "m1", [{"type": "set", "path": "status", "value": "done"}])
        stored = (await chat.get("c1", "m1")).model_dump()

        done = {"status": "done"}
        await asyncio.gather(
            delta.follow("m1", done), plain.follow("m1", done), compact.follow("m1", done)
        )
        await group.wait(lambda items: bool(items) and items[0]["status"] == "done", WAIT)
        await item.wait(lambda value: value is not None and value["status"] == "done", WAIT)
        await plain_group.wait(lambda items: bool(items) and items[0]["status"] == "done", WAIT)

    assert stored["content"] == "".join(f" w{n}" for n in range(TOKENS))
    assert delta.item == plain.item == compact.item == stored
    # Surge's client (deltas, so the compact form) and its plain twin end with the stored item.
    assert group.state == [stored] and item.state == stored and plain_group.state == [stored]
    # The delta subscriber got every update as a patch, the compact one as compact patches;
    # the plain one as whole items.
    assert delta.frames_per_kind == {"create": 1, "patch": TOKENS + 1}
    assert compact.frames_per_kind == {"create": 1, "compact": TOKENS + 1}
    assert plain.frames_per_kind == {"create": 1, "update": TOKENS + 1}
    per_token_delta = delta.bytes_per_kind["patch"] / TOKENS
    per_token_compact = compact.bytes_per_kind["compact"] / TOKENS
    per_token_whole = plain.bytes_per_kind["update"] / TOKENS
    print(
        f"\nbytes per token over {TOKENS} tokens: whole item {per_token_whole:.0f}, "
        f"delta {per_token_delta:.0f} ({per_token_whole / per_token_delta:.1f}x fewer), "
        f"compact {per_token_compact:.0f} ({per_token_whole / per_token_compact:.1f}x fewer)"
    )
    assert per_token_whole / per_token_delta >= 10
    assert per_token_compact < per_token_delta * 0.6


async def test_a_windowed_group_syncs_its_newest_items_and_pages_back_to_the_first(
    server: LiveServer,
) -> None:
    history = server.app.runtime.streams.history
    for n in range(12):
        await history.set("c1", f"m{n:02}", {"id": f"m{n:02}", "role": "user", "content": str(n)})

    async with connect(server.ws_url) as client:
        sub = await client.subscribe_group("history", "c1")
        assert [m["id"] for m in sub.state] == [f"m{n:02}" for n in range(7, 12)]
        assert sub.has_more
        await history.update("c1", "m10", [{"type": "append", "path": "content", "value": "!"}])
        await history.update("c1", "m02", [{"type": "append", "path": "content", "value": "?"}])
        await sub.wait(lambda items: any(m["content"] == "10!" for m in items), WAIT)

        older = await sub.load_older()
        oldest = await sub.load_older(limit=100)
        assert await sub.load_older() == []  # nothing left: no request sent

    assert [m["id"] for m in older] == [f"m{n:02}" for n in range(2, 7)]
    assert [m["id"] for m in oldest] == ["m00", "m01"]
    assert not sub.has_more
    assert [m["id"] for m in sub.state] == [f"m{n:02}" for n in range(12)]
    assert sub.state[2]["content"] == "2?" and sub.state[10]["content"] == "10!"
    # The update of m02, outside the window when it happened, did not add it early.
    page = await history.get_group("c1", limit=5)
    assert [m.id for m in page] == [f"m{n:02}" for n in range(7, 12)] and page.more is not None


async def test_page_answers_only_subscriptions_the_connection_holds(server: LiveServer) -> None:
    history = server.app.runtime.streams.history
    for group in ("c1", "secret"):
        for n in range(8):
            await history.set(group, f"m{n}", {"id": f"m{n}", "role": "user"})

    async with (
        raw_connect(server.ws_url, stream="history") as mine,
        raw_connect(server.ws_url, stream="history") as other,
    ):
        sync = await mine.join_synced("c1", subscription_id="s1")
        assert sync["more"] and len(sync["event"]["data"]) == 5
        denied = await other.join("secret", subscription_id="s9")
        assert is_error_event(await other.recv(), "STREAM_ACCESS_DENIED"), denied

        # Another connection cannot page through s1, and a refused join holds nothing.
        for data in (
            {"groupId": "c1", "subscriptionId": "s1"},
            {"groupId": "secret", "subscriptionId": "s9"},
        ):
            await other.send_json(
                {"type": "page", "data": {"streamName": "history", **data, "before": sync["more"]}}
            )
            answer = await other.recv()
            assert is_error_event(answer, UNKNOWN_SUBSCRIPTION), answer
            assert answer["groupId"] == data["groupId"]

        await mine.send_json(
            {
                "type": "page",
                "data": {
                    "streamName": "history",
                    "groupId": "c1",
                    "subscriptionId": "s1",
                    "before": sync["more"],
                    "limit": 2,
                },
            }
        )
        page = await mine.recv()
        await mine.send_json(
            {
                "type": "page",
                "data": {
                    "streamName": "history",
                    "groupId": "c1",
                    "subscriptionId": "s1",
                    "before": "not a cursor",
                },
            }
        )
        bad = await mine.recv()

    assert page["event"]["type"] == "page" and "subscriptionId" not in page
    assert [m["id"] for m in page["event"]["data"]] == ["m1", "m2"]
    assert isinstance(page["more"], str)
    assert is_error_event(bad, "INVALID_MESSAGE"), bad


async def test_the_surge_client_reports_a_refused_page(server: LiveServer) -> None:
    history = server.app.runtime.streams.history
    for n in range(8):
        await history.set("c1", f"m{n}", {"id": f"m{n}", "role": "user"})

    async with connect(server.ws_url) as client:
        sub = await client.subscribe_group("history", "c1")
        await history.delete("c1", "m0")
        older = await sub.load_older(limit=2)
        sub._group.more = "nonsense"  # a cursor the server does not know
        with pytest.raises(SubscriptionError) as info:
            await sub.load_older()

    assert [m["id"] for m in older] == ["m1", "m2"]
    assert info.value.code == "INVALID_MESSAGE"


async def test_a_group_of_100000_messages_opens_with_its_last_50(tmp_path: Path) -> None:
    store = tmp_path / "big"
    seed = FileStreamAdapter(store, synchronous="normal")
    await seed.open(lambda message: None)
    try:
        for start in range(0, 100_000, 5_000):
            await asyncio.gather(
                *(
                    seed.set("big", "c1", f"m{n:06}", {"role": "user", "content": f"message {n}"})
                    for n in range(start, start + 5_000)
                )
            )
    finally:
        await seed.close()
    app = create_app(
        streams=[StreamConfig(name="big", schema=Message, sync_limit=50)],
        adapter=FileStreamAdapter(store, synchronous="normal"),
    )
    async with live_server(app) as srv, connect(srv.ws_url) as client:
        began = time.perf_counter()
        sub = await client.subscribe_group("big", "c1", timeout=WAIT)
        opened_s = time.perf_counter() - began
        page = await sub.load_older()

    assert [m["id"] for m in sub.state[-50:]] == [f"m{n:06}" for n in range(99_950, 100_000)]
    assert [m["id"] for m in page] == [f"m{n:06}" for n in range(99_900, 99_950)]
    assert len(sub.state) == 100 and sub.has_more
    assert opened_s < 2.0, (
        opened_s
    )  # bounded (an index walk); the whole group would take far longer


async def test_an_update_on_one_redis_instance_reaches_the_other_as_a_patch() -> None:
    require_component(redis_is_up(REDIS_TEST_URL), f"no Redis server answers at {REDIS_TEST_URL}")
    prefix = f"surge-test-{uuid.uuid4().hex}"

    def app() -> SurgeApp:
        return create_app(
            streams=[StreamConfig(name="chat", schema=Message)],
            adapter=RedisStreamAdapter(REDIS_TEST_URL, prefix=prefix),
        )

    try:
        async with (
            live_server(app()) as writer,
            live_server(app()) as reader,
            connect(reader.ws_url) as client,
            raw_connect(reader.ws_url, stream="chat") as raw,
        ):
            join = {"streamName": "chat", "groupId": "c1", "subscriptionId": "d", "deltas": True}
            await raw.send_json({"type": "join", "data": join})
            assert (await raw.recv())["event"]["type"] == "sync"
            sub = await client.subscribe_group("chat", "c1")
            chat = writer.app.runtime.streams.chat
            await chat.set("c1", "m1", {"id": "m1", "role": "assistant"})
            for word in ("Hello", " Redis"):
                await chat.update(
                    "c1", "m1", [{"type": "append", "path": "content", "value": word}]
                )
            kinds = [(await raw.recv())["event"]["type"] for _ in range(3)]
            await sub.wait(lambda items: bool(items) and items[0]["content"] == "Hello Redis", WAIT)
    finally:
        drop_redis_keys(prefix)

    assert kinds == ["create", "patch", "patch"]
    assert sub.state == [
        {"id": "m1", "role": "assistant", "content": "Hello Redis", "status": "streaming"}
    ]
