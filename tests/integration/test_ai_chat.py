"""examples/ai-chat through the real app on a real socket: POST a message, watch the reply grow.

A WebSocket subscriber of the conversation sees the user's message, then ONE assistant item
created (``streaming``, empty), updated word by word with a growing ``content``, then ``done``,
with ``typing`` events around it. Redelivery (as after a crash) regenerates the same item.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from ai_chat_example import AI_CHAT, API_KEY, load, serve_fake_openai
from surge import SurgeApp, create_app
from surge.testing import live_server

from .streamclient import Frame, StreamClient, connect

(chat_model,) = load("chat_model")  # the example's own module
CONVERSATION = "conv-1"
REPLY_DEADLINE_S = 30.0  # generous: both cores may be busy with other suites


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private copy of the example (its own .surge store), on the fake model."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "SURGE_STORE", "SURGE_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AI_CHAT_WORD_DELAY", "0.01")
    target = tmp_path / "ai-chat"
    shutil.copytree(
        AI_CHAT, target, ignore=shutil.ignore_patterns(".surge", "__pycache__", "node_modules")
    )
    yield target


def fake_answer(prompt: str) -> str:
    """The example's fake model's whole answer to ``prompt``."""
    answer: str = chat_model.fake_answer(prompt)
    return answer


async def frames_until(client: StreamClient, reply_id: str, **expected: Any) -> list[Frame]:
    """Every frame up to the first write of the reply whose fields have the ``expected`` values."""
    frames: list[Frame] = []
    deadline = time.monotonic() + REPLY_DEADLINE_S
    while True:
        frame = await client.recv(within=max(0.1, deadline - time.monotonic()))
        frames.append(frame)
        data = frame["event"].get("data")
        if (
            frame.get("id") == reply_id
            and isinstance(data, dict)
            and all(data.get(k) == v for k, v in expected.items())
        ):
            return frames


async def frames_until_done(client: StreamClient, reply_id: str) -> list[Frame]:
    """Every frame up to the one that marks the reply ``done`` (bounded)."""
    return await frames_until(client, reply_id, status="done")


def typing_events(frames: list[Frame]) -> list[dict[str, Any]]:
    return [
        f["event"]["event"]["data"]
        for f in frames
        if f["event"]["type"] == "event" and f["event"]["event"]["type"] == "typing"
    ]


async def post(server_url: str, text: str, conversation: str = CONVERSATION) -> httpx2.Response:
    async with httpx2.AsyncClient() as client:
        return await client.post(f"{server_url}/chat/{conversation}", json={"text": text})


async def test_reply_grows_word_by_word_in_one_item_then_is_done(project: Path) -> None:
    app = create_app(project)
    async with live_server(app) as server, connect(server.ws_url, stream="message") as client:
        await client.join_synced(CONVERSATION)
        started = time.monotonic()
        response = await post(server.url, "What is a stream?")
        assert response.status_code == 202, response.text
        assert time.monotonic() - started < 5  # answered at once, not after the reply
        message = response.json()
        assert (message["role"], message["content"]) == ("user", "What is a stream?")
        reply_id = f"{message['id']}-reply"

        frames = await frames_until_done(client, reply_id)

    user_frame, *rest = frames
    assert (user_frame["id"], user_frame["event"]) == (
        message["id"],
        {"type": "create", "data": message},
    )
    changes = [f for f in rest if f["event"]["type"] != "event"]
    assert all(f["id"] == reply_id for f in changes)
    create, *updates = changes
    assert create["event"]["type"] == "create"
    assert create["event"]["data"] | {"createdAt": None} == {
        "id": reply_id,
        "role": "assistant",
        "content": "",
        "status": "streaming",
        "createdAt": None,
        "replyTo": message["id"],
        "attempt": 1,
        "error": None,
    }
    assert {f["event"]["type"] for f in updates} == {"update"}
    contents = [f["event"]["data"]["content"] for f in updates]
    answer = fake_answer("What is a stream?")
    assert len(contents) > 10
    assert contents[-1] == answer
    # Each word extends the one item: every content is a longer prefix of the answer.
    assert all(answer.startswith(c) for c in contents)
    growing = contents[:-1]  # the last update only flips the status
    assert [len(c) for c in growing] == sorted({len(c) for c in growing})
    assert [f["event"]["data"]["status"] for f in updates] == ["streaming"] * (len(updates) - 1) + [
        "done"
    ]

    # "typing" shows from before the first word until the reply is complete.
    assert typing_events(frames) == [{"replyId": reply_id, "isTyping": True}]
    first_typing = next(i for i, f in enumerate(rest) if f["event"]["type"] == "event")
    first_word = next(i for i, f in enumerate(rest) if f["event"].get("data", {}).get("content"))
    assert first_typing < first_word


async def test_typing_stops_after_the_reply(project: Path) -> None:
    app = create_app(project)
    async with live_server(app) as server, connect(server.ws_url, stream="message") as client:
        await client.join_synced(CONVERSATION)
        response = await post(server.url, "hello")
        reply_id = f"{response.json()['id']}-reply"
        await frames_until_done(client, reply_id)
        await app.wait_idle(timeout=REPLY_DEADLINE_S)
        after = await client.barrier()
    assert typing_events(after) == [{"replyId": reply_id, "isTyping": False}]


async def redeliver(app: SurgeApp, message: dict[str, Any]) -> None:
    """Emit the message's event again, as a redelivery after a crash would."""
    data = {"conversationId": CONVERSATION, "messageId": message["id"], "text": message["content"]}
    assert await app.emit({"topic": "chat.message.created", "data": data})
    await app.wait_idle(timeout=REPLY_DEADLINE_S)


async def test_redelivery_of_an_unfinished_reply_regenerates_it_from_scratch(
    project: Path,
) -> None:
    app = create_app(project)
    async with live_server(app) as server:
        response = await post(server.url, "tell me more")
        message = response.json()
        reply_id = f"{message['id']}-reply"
        await app.wait_idle(timeout=REPLY_DEADLINE_S)
        stream = app.runtime.streams.message
        # What a kill -9 halfway through leaves behind: a half-written, still "streaming" item.
        half = await stream.get(CONVERSATION, reply_id)
        await stream.set(
            CONVERSATION,
            reply_id,
            half.model_copy(update={"content": "You said: stale", "status": "streaming"}),
        )
        await redeliver(app, message)
        reply = await stream.get(CONVERSATION, reply_id)
        items = await stream.get_group(CONVERSATION)
    assert (reply.status, reply.content, reply.attempt) == ("done", fake_answer("tell me more"), 2)
    assert reply.createdAt == half.createdAt
    assert [item.id for item in items] == [message["id"], reply_id]  # still ONE reply item


async def test_redelivery_of_a_finished_reply_changes_nothing(project: Path) -> None:
    app = create_app(project)
    async with live_server(app) as server, connect(server.ws_url, stream="message") as client:
        await client.join_synced(CONVERSATION)
        response = await post(server.url, "once is enough")
        message = response.json()
        reply_id = f"{message['id']}-reply"
        await frames_until_done(client, reply_id)
        await app.wait_idle(timeout=REPLY_DEADLINE_S)
        await client.barrier()
        await redeliver(app, message)
        assert await client.barrier() == []  # no write, no typing


@pytest.mark.parametrize(
    ("conversation", "body"),
    [
        (CONVERSATION, {"text": ""}),
        (CONVERSATION, {"text": "   "}),
        (CONVERSATION, {}),
        (CONVERSATION, {"text": "x" * 4001}),
        (CONVERSATION, {"text": 42}),
        ("c" * 300, {"text": "hi"}),  # longer than an id may be
        ("bad%01conversation", {"text": "hi"}),  # a control character
    ],
)
async def test_invalid_messages_are_refused_with_400_and_start_no_reply(
    project: Path, conversation: str, body: dict[str, Any]
) -> None:
    app = create_app(project)
    async with live_server(app) as server, httpx2.AsyncClient() as http:
        response = await http.post(f"{server.url}/chat/{conversation}", json=body)
        assert response.status_code == 400, response.text
        await app.wait_idle(timeout=REPLY_DEADLINE_S)
        assert await app.runtime.streams.message.list_groups() == []


# --- a real model: an OpenAI-compatible endpoint (a fake one on 127.0.0.1) -----------------


def use_openai(monkeypatch: pytest.MonkeyPatch, url: str, model: str) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_MODEL", model)


async def test_reply_from_an_openai_compatible_endpoint_streams_its_deltas_with_history(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve_fake_openai() as fake:
        use_openai(monkeypatch, fake.url, "tiny-model")
        app = create_app(project)
        async with live_server(app) as server, connect(server.ws_url, stream="message") as client:
            await client.join_synced(CONVERSATION)
            first = (await post(server.url, "Say hello")).json()
            frames = await frames_until_done(client, f"{first['id']}-reply")
            second = (await post(server.url, "And again?")).json()
            await frames_until_done(client, f"{second['id']}-reply")
    contents = [
        f["event"]["data"]["content"]
        for f in frames
        if f.get("id") == f"{first['id']}-reply" and f["event"]["type"] == "update"
    ]
    assert contents == ["Hello", "Hello,", "Hello, wor", "Hello, world", *["Hello, world ☕"] * 2]
    assert [r["model"] for r in fake.requests] == ["tiny-model", "tiny-model"]
    # The second question goes with the conversation so far.
    assert fake.requests[1]["messages"][1:] == [
        {"role": "user", "content": "Say hello"},
        {"role": "assistant", "content": "Hello, world ☕"},
        {"role": "user", "content": "And again?"},
    ]


async def test_a_failing_model_marks_the_reply_error_and_the_retry_regenerates_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve_fake_openai() as fake:
        use_openai(monkeypatch, fake.url, "broken")  # "partial", then an error event
        app = create_app(project)
        async with live_server(app) as server, connect(server.ws_url, stream="message") as client:
            await client.join_synced(CONVERSATION)
            message = (await post(server.url, "hi")).json()
            reply_id = f"{message['id']}-reply"
            failed = (await frames_until(client, reply_id, status="error", attempt=1))[-1]
            # The runner retries with backoff (first retry after about a second).
            retried = await frames_until(client, reply_id, status="streaming", attempt=2)
    reply = failed["event"]["data"]
    assert reply["content"] == "partial"
    assert reply["error"] == "ChatModelError: the model reported an error: the model crashed"
    assert retried[-1]["event"]["data"]["content"] == ""  # regenerated from scratch
    assert len(fake.requests) >= 2
