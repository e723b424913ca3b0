"""surge.testing.TestClient: a project in-process, no port, on a store of its own.

Also the public-API ports of a few protocol tests that use the private ``streamclient`` helpers
(test_websocket.py): the same behaviour, stated with ``subscribe_group``/``subscribe_item``.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from surge import ApiResponse, ApiRouteConfig, ConfigError, EventConfig, StreamConfig, create_app
from surge.client import Change, SubscriptionError, UpgradeRefused
from surge.server.app import SurgeApp
from surge.testing import TestClient

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
TODO = REPO / "examples" / "todo"
CHAT = REPO / "examples" / "chat"
WAIT = 10.0


@pytest.fixture
def todo_project(tmp_path: Path) -> Path:
    """A private copy of examples/todo, so a write to `.surge/` would be visible."""
    return Path(
        shutil.copytree(TODO, tmp_path / "todo", ignore=shutil.ignore_patterns(".surge", "web"))
    )


# -- HTTP and subscriptions -----------------------------------------------------------------------


def test_post_reaches_a_group_subscriber_and_the_response_is_httpx_style(
    todo_project: Path,
) -> None:
    with TestClient(todo_project) as client:
        inbox = client.subscribe_group("todo", "inbox")
        assert inbox.state == []
        response = client.post("/todo", json={"description": "buy milk"})
        assert response.status_code == 200
        todo = response.json()
        assert todo["description"] == "buy milk"
        assert inbox.wait(lambda todos: len(todos) == 1, timeout=WAIT) == [todo]
        assert client.get("/todo").json() == [todo]


def test_invalid_body_is_a_400_and_nothing_reaches_subscribers(todo_project: Path) -> None:
    with TestClient(todo_project) as client:
        inbox = client.subscribe_group("todo", "inbox")
        response = client.post("/todo", json={"dueDate": "tomorrow"})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid request body"
        client.post("/todo", json={"description": "barrier"})
        todos = inbox.wait(lambda todos: len(todos) == 1, timeout=WAIT)
        assert [t["description"] for t in todos] == ["barrier"]


def test_item_subscription_follows_complete_and_delete(todo_project: Path) -> None:
    with TestClient(todo_project) as client:
        todo_id = client.post("/todo", json={"description": "x"}).json()["id"]
        item = client.subscribe_item("todo", "inbox", todo_id)
        assert item.state is not None and item.state["completedAt"] is None
        changes: list[Change] = []
        item.on_change(changes.append)
        assert client.put(f"/todo/{todo_id}", json={}).status_code == 200
        item.wait(lambda todo: todo is not None and todo["completedAt"] is not None, WAIT)
        assert client.delete(f"/todo/{todo_id}").status_code == 200
        item.wait(lambda todo: todo is None, WAIT)
        assert [c.kind for c in changes] == ["update", "delete"]
        assert client.delete(f"/todo/{todo_id}").status_code == 404


def test_typing_events_reach_on_event(todo_project: Path) -> None:
    with TestClient(todo_project) as client:
        inbox = client.subscribe_group("todo", "inbox")
        seen: list[Any] = []
        inbox.on_event("typing", seen.append)
        assert client.post("/todo/typing", json={"userId": "ann"}).status_code == 202
        client.post("/todo", json={"description": "barrier"})  # frames arrive in order
        inbox.wait(lambda todos: len(todos) == 1, WAIT)
        assert seen == [{"userId": "ann", "isTyping": True}]


def test_direct_stream_writes_reach_subscribers(todo_project: Path) -> None:
    with TestClient(todo_project) as client:
        inbox = client.subscribe_group("todo", "inbox")
        todo = {"id": "t1", "description": "direct", "createdAt": "now"}
        stored = client.streams.todo.set("inbox", "t1", todo)
        assert stored.description == "direct"  # the stream's pydantic model
        inbox.wait(lambda todos: [t["id"] for t in todos] == ["t1"], WAIT)
        assert client.streams["todo"].get("inbox", "t1") == stored
        assert client.streams.todo.list_groups() == ["inbox"]
        client.streams.todo.delete("inbox", "t1")
        inbox.wait(lambda todos: todos == [], WAIT)
        assert list(client.streams) == ["todo"]
        with pytest.raises(AttributeError, match="no stream named 'nope'"):
            client.streams.nope  # noqa: B018


# -- isolation ------------------------------------------------------------------------------------


def test_the_project_store_is_never_touched_and_each_client_starts_empty(
    todo_project: Path,
) -> None:
    with TestClient(todo_project) as first:
        first.post("/todo", json={"description": "only here"})
        assert len(first.get("/todo").json()) == 1
        with TestClient(todo_project) as second:
            assert second.get("/todo").json() == []
    with TestClient(todo_project) as again:
        assert again.get("/todo").json() == []
    assert not (todo_project / ".surge").exists()


def test_the_repository_example_runs_without_a_copy() -> None:
    before = sorted(p.name for p in TODO.iterdir())
    with TestClient(TODO) as client:
        assert client.post("/todo", json={"description": "x"}).status_code == 200
    assert sorted(p.name for p in TODO.iterdir()) == before


# -- auth -----------------------------------------------------------------------------------------


def test_stream_auth_token_admits_members_and_denies_others() -> None:
    with TestClient(CHAT, token="alice-token") as client:
        chat = client.subscribe_group("chatMessage", "project-a")
        response = client.post("/chat/project-a", json={"userId": "alice", "message": "hi"})
        assert response.status_code == 200
        chat.wait(lambda messages: [m["message"] for m in messages] == ["hi"], WAIT)
        with pytest.raises(SubscriptionError) as caught:
            client.subscribe_group("chatMessage", "project-z")
        assert caught.value.code == "STREAM_ACCESS_DENIED"


def test_other_tokens_on_connections_of_their_own() -> None:
    with TestClient(CHAT) as client:
        with pytest.raises(SubscriptionError, match="STREAM_ACCESS_DENIED"):
            client.subscribe_group("chatMessage", "project-b")  # anonymous
        with client.connect(token="bob-token", token_via="query") as bob:
            assert bob.subscribe_group("chatMessage", "project-b").state == []
        with pytest.raises(UpgradeRefused) as refused:
            client.connect(token="not-a-valid-token")
        assert refused.value.status == 401


# -- event steps ----------------------------------------------------------------------------------


class Counter(BaseModel):
    id: str
    count: int


def counting_app() -> SurgeApp:
    async def count(input: Any, ctx: Any) -> None:
        current = await ctx.streams.counter.get("all", "c")
        total = (current.count if current else 0) + input["by"]
        await ctx.streams.counter.set("all", "c", {"id": "c", "count": total})

    async def bump(req: Any, ctx: Any) -> ApiResponse:
        await ctx.emit({"topic": "bump", "data": {"by": req.body["by"]}})
        return ApiResponse(202, {"queued": True})

    return create_app(
        streams=[StreamConfig(name="counter", schema=Counter)],
        steps=[
            (
                EventConfig(name="Count", subscribes=["bump"], fifo=True),
                count,
            ),
            (ApiRouteConfig(name="Bump", method="POST", path="/bump", emits=["bump"]), bump),
        ],
    )


def test_wait_idle_returns_once_event_steps_have_run() -> None:
    with TestClient(counting_app()) as client:
        counter = client.subscribe_item("counter", "all", "c")
        for by in (1, 2, 3):
            assert client.post("/bump", json={"by": by}).status_code == 202
        client.emit(topic="bump", data={"by": 10})
        client.wait_idle(timeout=WAIT)
        assert client.streams.counter.get("all", "c").count == 16
        counter.wait(lambda item: item is not None and item["count"] == 16, WAIT)


# -- misuse ---------------------------------------------------------------------------------------


def test_calling_the_client_from_its_own_callback_is_refused(todo_project: Path) -> None:
    with TestClient(todo_project) as client:
        inbox = client.subscribe_group("todo", "inbox")
        problems: list[BaseException] = []
        done = threading.Event()

        def reenter(change: Change) -> None:
            try:
                client.get("/todo")
            except RuntimeError as exc:
                problems.append(exc)
            done.set()

        inbox.on_change(reenter)
        client.post("/todo", json={"description": "x"})
        assert done.wait(WAIT)
        assert "own callbacks" in str(problems[0])


def test_outside_with_the_client_says_so(todo_project: Path) -> None:
    client = TestClient(todo_project)
    with pytest.raises(RuntimeError, match="inside `with`"):
        client.get("/todo")


def test_a_broken_project_fails_on_enter_with_the_config_error(tmp_path: Path) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "broken_step.py").write_text("config = {'type': 'api'}\n")
    with pytest.raises(ConfigError, match=r"broken_step\.py"), TestClient(tmp_path):
        pass


# -- ports of test_websocket.py's private-helper tests to the public client -----------------------


class Todo(BaseModel):
    id: str
    description: str
    done: bool = False


def todo_app() -> SurgeApp:
    return create_app(streams=[StreamConfig(name="todo", schema=Todo)])


def todo(id: str, description: str = "d") -> dict[str, Any]:
    return {"id": id, "description": description, "done": False}


def test_group_sync_lists_existing_items_in_creation_order() -> None:
    with TestClient(todo_app()) as client:
        client.streams.todo.set("inbox", "b", todo("b", "first"))
        client.streams.todo.set("inbox", "a", todo("a", "second"))
        client.streams.todo.set("inbox", "b", todo("b", "first, edited"))
        inbox = client.subscribe_group("todo", "inbox")
        assert inbox.state == [todo("b", "first, edited"), todo("a", "second")]


def test_set_without_id_in_data_puts_the_key_id_on_the_wire() -> None:
    with TestClient(todo_app()) as client:
        inbox = client.subscribe_group("todo", "inbox")
        client.streams.todo.set("inbox", "t9", {"id": "other", "description": "x"})
        assert inbox.wait(lambda items: len(items) == 1, WAIT)[0]["id"] == "t9"


def test_item_subscription_syncs_null_then_gets_only_its_changes() -> None:
    with TestClient(todo_app()) as client:
        item = client.subscribe_item("todo", "inbox", "t1")
        assert item.state is None
        kinds: list[str] = []
        item.on_change(lambda change: kinds.append(change.kind))
        stream = client.streams.todo
        stream.set("inbox", "t2", todo("t2"))  # another item: not for us
        stream.set("inbox", "t1", todo("t1", "one"))
        stream.set("inbox", "t1", todo("t1", "two"))
        stream.delete("inbox", "t2")
        stream.delete("inbox", "t1")
        item.wait(lambda value: value is None and len(kinds) == 3, WAIT)
        assert kinds == ["create", "update", "delete"]


def test_item_subscriber_of_one_group_never_gets_another_groups_item_with_the_same_id() -> None:
    with TestClient(todo_app()) as client:
        item = client.subscribe_item("todo", "group-b", "t1")
        events: list[Any] = []
        item.on_event("x", events.append)
        stream = client.streams.todo
        stream.set("group-a", "t1", todo("t1", "a"))
        stream.send({"groupId": "group-a", "id": "t1"}, {"type": "x", "data": None})
        stream.delete("group-a", "t1")
        stream.set("group-b", "t1", todo("t1", "b"))
        assert item.wait(lambda value: value is not None, WAIT) == todo("t1", "b")
        assert events == []


def test_send_to_group_reaches_group_subscribers_but_not_item_subscribers() -> None:
    with TestClient(todo_app()) as client:
        inbox = client.subscribe_group("todo", "inbox")
        item = client.subscribe_item("todo", "inbox", "t1")
        group_events: list[Any] = []
        item_events: list[Any] = []
        inbox.on_event("typing", group_events.append)
        item.on_event("typing", item_events.append)
        client.streams.todo.send({"groupId": "inbox"}, {"type": "typing", "data": {"u": "ann"}})
        client.streams.todo.set("inbox", "t1", todo("t1"))  # barrier for both subscriptions
        item.wait(lambda value: value is not None, WAIT)
        assert group_events == [{"u": "ann"}] and item_events == []
        assert client.streams.todo.get_group("inbox")[0].id == "t1"  # the event was not stored


def test_unsubscribe_stops_delivery() -> None:
    with TestClient(todo_app()) as client:
        inbox = client.subscribe_group("todo", "inbox")
        inbox.unsubscribe()
        client.streams.todo.set("inbox", "t1", todo("t1"))
        barrier = client.subscribe_group("todo", "barrier")
        assert barrier.state == [] and inbox.state == []
        assert client.app.runtime.hub.subscriber_count(("todo", "inbox")) == 0
