"""The real npm client (@motiadev/stream-client-node) against ``surge start`` on the todo example.

Every test runs its own server on a private copy of examples/todo (its own file store) and drives
one or more node processes through driver.mjs. Extra steps, where a test needs them, are written
into that copy. Negative checks ("receives nothing") use a barrier: a later change that must
arrive after anything misrouted would have, since a connection's frames are delivered in order.
"""

from __future__ import annotations

import contextlib
import json
import signal
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from websockets.sync.client import ClientConnection, connect

from compat.conftest import NodeClient
from compat.extra_steps import (
    ANY_GROUP_STEP,
    AUTH_CONFIG,
    BURST_STEP,
    DOUBLE_UPDATE_STEP,
    PRIVATE_STREAM,
    REACT_STEP,
    SMALL_LATEST_OUTBOX_CONFIG,
    SMALL_OUTBOX_CONFIG,
    SPAM_STEP,
)
from e2e.surge_process import SurgeProcess, copy_todo_project, poll

pytestmark = [pytest.mark.compat, pytest.mark.timeout(60)]

NodeFactory = Callable[..., NodeClient]
ServerFactory = Callable[..., SurgeProcess]

# -- helpers ------------------------------------------------------------------------------------


def project_with_steps(tmp_path: Path, **steps: str) -> Path:
    """A copy of examples/todo plus ``steps/<name>.py`` for each keyword."""
    project = copy_todo_project(tmp_path / "todo")
    for name, source in steps.items():
        (project / "steps" / f"{name}.py").write_text(textwrap.dedent(source).lstrip())
    return project


def call(server: SurgeProcess, method: str, path: str, body: Any = None) -> Any:
    """One HTTP request to the server; returns the JSON body of a 2xx answer."""
    response = httpx2.request(method, server.url + path, json=body, timeout=10)
    assert response.status_code // 100 == 2, (method, path, response.status_code, response.text)
    return response.json()


def create_todo(server: SurgeProcess, description: str) -> dict[str, Any]:
    """POST /todo; returns the created todo."""
    todo: dict[str, Any] = call(server, "POST", "/todo", {"description": description})
    return todo


def ids(state: list[dict[str, Any]] | None) -> list[str]:
    """The ids of a group state, in order."""
    return [item["id"] for item in state or []]


def state_history(client: NodeClient, key: str) -> list[Any]:
    """Every state the change listener of ``key`` reported, in order."""
    return [m["state"] for m in list(client.messages) if m["type"] == "state" and m["key"] == key]


@dataclass
class DrainStats:
    """What a ``group_drain`` has read so far."""

    count: int = 0
    last_timestamp: int = 0


@contextlib.contextmanager
def group_drain(ws_url: str, stream: str, group: str) -> Iterator[DrainStats]:
    """A plain WebSocket subscriber of one group reading every frame (a load sink)."""
    stats = DrainStats()

    def read(ws: ClientConnection) -> None:
        try:
            for raw in ws:
                stats.last_timestamp = json.loads(raw)["timestamp"]
                stats.count += 1
        except Exception:  # the server went away: the count says how far we got
            return

    with connect(ws_url, max_size=None) as ws:
        join = {"streamName": stream, "groupId": group, "subscriptionId": "drain"}
        ws.send(json.dumps({"type": "join", "data": join}))
        reader = threading.Thread(target=read, args=(ws,), daemon=True)
        reader.start()
        yield stats
    reader.join(5)


# -- group and item subscriptions ---------------------------------------------------------------


def test_group_subscription_syncs_existing_todos_then_follows_create_update_delete(
    todo_server: SurgeProcess, node_client: NodeFactory
) -> None:
    first = create_todo(todo_server, "existing one")
    second = create_todo(todo_server, "existing two")
    client = node_client(todo_server.ws_url)

    client.subscribe_group("g", "todo", "inbox")
    assert client.wait_state("g", lambda s: len(s) == 2) == [first, second]

    third = create_todo(todo_server, "created live")
    assert client.wait_state("g", lambda s: len(s) == 3) == [first, second, third]

    completed = call(todo_server, "PUT", f"/todo/{first['id']}", {"completed": True})
    assert completed["completedAt"]
    state = client.wait_state("g", lambda s: s[0]["completedAt"] is not None)
    assert state == [completed, second, third]

    call(todo_server, "DELETE", f"/todo/{second['id']}")
    state = client.wait_state("g", lambda s: len(s) == 2)
    assert state == [completed, third]
    assert state == call(todo_server, "GET", "/todo")
    assert client.errors() == []


def test_group_subscription_of_an_empty_group_syncs_to_an_empty_list(
    todo_server: SurgeProcess, node_client: NodeFactory
) -> None:
    client = node_client(todo_server.ws_url)
    client.subscribe_group("g", "todo", "nobody-here")
    client.wait_synced("g")
    assert client.get_state("g") == []
    (sync,) = client.frames()
    assert "id" not in sync
    assert sync["event"] == {"type": "sync", "data": []}


def test_item_subscription_follows_sync_update_and_delete_to_null(
    todo_server: SurgeProcess, node_client: NodeFactory
) -> None:
    todo = create_todo(todo_server, "watch me")
    client = node_client(todo_server.ws_url)

    client.subscribe_item("i", "todo", "inbox", todo["id"])
    assert client.wait_state("i", lambda s: s is not None) == todo

    completed = call(todo_server, "PUT", f"/todo/{todo['id']}", {"completed": True})
    assert client.wait_state("i", lambda s: s["completedAt"] is not None) == completed
    reopened = call(todo_server, "PUT", f"/todo/{todo['id']}", {"completed": False})
    assert client.wait_state("i", lambda s: s["completedAt"] is None) == reopened

    call(todo_server, "DELETE", f"/todo/{todo['id']}")
    assert client.wait_state("i", lambda s: s is None) is None
    assert state_history(client, "i") == [todo, completed, reopened, None]


def test_item_subscription_of_a_missing_item_syncs_to_null_then_sees_it_created(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory
) -> None:
    server = surge_server(project_with_steps(tmp_path, any_group_step=ANY_GROUP_STEP))
    client = node_client(server.ws_url)
    client.subscribe_item("i", "todo", "inbox", "later")
    client.wait_synced("i")
    assert client.get_state("i") is None

    created = call(
        server, "POST", "/groups/inbox/todos/later", {"action": "set", "description": "x"}
    )
    assert client.wait_state("i", lambda s: s is not None) == created


# -- ephemeral events ---------------------------------------------------------------------------


def test_typing_event_reaches_on_event_of_the_group_and_leaves_the_state_alone(
    todo_server: SurgeProcess, node_client: NodeFactory
) -> None:
    todo = create_todo(todo_server, "someone types")
    client = node_client(todo_server.ws_url)
    client.subscribe_group("g", "todo", "inbox")
    client.on_event("g", "typing")
    client.wait_state("g", lambda s: len(s) == 1)

    call(todo_server, "POST", "/todo/typing", {"userId": "ada", "isTyping": True})
    call(todo_server, "POST", "/todo/typing", {"userId": "ada", "isTyping": False})
    client.wait_for(lambda m: m["type"] == "event" and m["data"]["isTyping"] is False)

    assert client.events("g", "typing") == [
        {"userId": "ada", "isTyping": True},
        {"userId": "ada", "isTyping": False},
    ]
    assert client.get_state("g") == [todo]
    typing_frames = [f for f in client.frames() if f["event"]["type"] == "event"]
    assert all("id" not in f for f in typing_frames), typing_frames


def test_item_channel_event_reaches_the_item_and_its_group_but_not_other_items(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory
) -> None:
    server = surge_server(project_with_steps(tmp_path, react_step=REACT_STEP))
    liked = create_todo(server, "liked")
    other = create_todo(server, "other")
    client = node_client(server.ws_url)
    for key, todo_id in (("liked", liked["id"]), ("other", other["id"])):
        client.subscribe_item(key, "todo", "inbox", todo_id)
        client.on_event(key, "reaction")
        client.on_event(key, "typing")
    client.subscribe_group("g", "todo", "inbox")
    client.on_event("g", "reaction")
    client.wait_state("liked", lambda s: s is not None)
    client.wait_state("other", lambda s: s is not None)
    client.wait_state("g", lambda s: len(s) == 2)

    call(server, "POST", f"/todo/{liked['id']}/react", {"emoji": "+1"})
    # A group-level event goes to the group only, never to item subscriptions.
    call(server, "POST", "/todo/typing", {"userId": "ada", "isTyping": True})
    # Barrier: the last event, to the other item; everything before it has been delivered.
    call(server, "POST", f"/todo/{other['id']}/react", {"emoji": "-1"})
    client.wait_for(lambda m: m["type"] == "event" and m["key"] == "other")

    assert client.events("liked", "reaction") == [{"id": liked["id"], "emoji": "+1"}]
    assert client.events("other", "reaction") == [{"id": other["id"], "emoji": "-1"}]
    client.wait_for(
        lambda m: m["type"] == "event" and m["key"] == "g" and m["data"]["emoji"] == "-1"
    )
    assert client.events("g", "reaction") == [
        {"id": liked["id"], "emoji": "+1"},
        {"id": other["id"], "emoji": "-1"},
    ]
    assert client.events("liked", "typing") == client.events("other", "typing") == []
    assert client.get_state("liked") == liked


# -- ordering -----------------------------------------------------------------------------------


@pytest.mark.parametrize("together", [False, True], ids=["back-to-back", "same-commit"])
def test_two_updates_of_one_item_in_the_same_millisecond_are_both_applied(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory, together: bool
) -> None:
    server = surge_server(project_with_steps(tmp_path, double_update_step=DOUBLE_UPDATE_STEP))
    todo = create_todo(server, "original")
    client = node_client(server.ws_url)
    client.subscribe_group("g", "todo", "inbox")
    client.subscribe_item("i", "todo", "inbox", todo["id"])
    client.wait_state("g", lambda s: len(s) == 1)
    client.wait_state("i", lambda s: s is not None)

    stored = call(
        server,
        "POST",
        f"/todo/{todo['id']}/double",
        {"first": "first", "second": "second", "together": together},
    )
    assert stored["description"] == "second"

    assert client.wait_state("i", lambda s: s["description"] == "second") == stored
    assert client.wait_state("g", lambda s: s[0]["description"] == "second") == [stored]
    # Both updates were applied, in order: the first one was not dropped as "not newer".
    assert [s["description"] for s in state_history(client, "i")] == [
        "original",
        "first",
        "second",
    ]
    assert [s[0]["description"] for s in state_history(client, "g")] == [
        "original",
        "first",
        "second",
    ]
    updates = [f for f in client.frames() if f["event"]["type"] == "update"]
    assert len(updates) == 2
    assert updates[0]["timestamp"] < updates[1]["timestamp"], updates
    timestamps = [f["timestamp"] for f in client.frames()]
    assert timestamps == sorted(set(timestamps)), "timestamps must strictly increase"


# -- reconnect ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_client_reconnects_after_a_server_restart_and_resyncs_changes_made_meanwhile(
    todo_server: SurgeProcess, node_client: NodeFactory, how: str
) -> None:
    kept = create_todo(todo_server, "kept")
    doomed = create_todo(todo_server, "doomed")
    client = node_client(todo_server.ws_url)
    client.subscribe_group("g", "todo", "inbox")
    client.subscribe_item("i", "todo", "inbox", kept["id"])
    client.subscribe_item("d", "todo", "inbox", doomed["id"])
    client.wait_state("g", lambda s: len(s) == 2)
    client.wait_state("i", lambda s: s is not None)
    client.wait_state("d", lambda s: s is not None)

    mark = client.mark()
    if how == "sigterm":
        todo_server.stop()
    else:
        todo_server.kill()
    client.wait_for(
        lambda m: m["type"] == "socket" and m["state"] == "close", since=mark, what="the close"
    )
    closed_at = time.monotonic()
    # The npm node client retries ONCE, 2 s after the close: a refused connection throws in the
    # `ws` client (no "error" listener) and it never retries again. So the server must be back
    # within 2 s.
    todo_server.start()
    back_after = time.monotonic() - closed_at
    added = create_todo(todo_server, "added right after the restart")
    completed = call(todo_server, "PUT", f"/todo/{kept['id']}", {"completed": True})
    call(todo_server, "DELETE", f"/todo/{doomed['id']}")

    client.wait_for(
        lambda m: m["type"] == "socket" and m["state"] == "open",
        timeout=10,
        since=mark,
        what=f"the client's own reconnect (the server was back {back_after:.2f} s after the close)",
    )
    assert client.wait_state("g", lambda s: ids(s) == [kept["id"], added["id"]], timeout=10) == [
        completed,
        added,
    ]
    assert client.wait_state("i", lambda s: s["completedAt"] is not None) == completed
    # Deleted while the client was away: the item resync says null.
    assert client.wait_state("d", lambda s: s is None) is None

    # The live feed works on the new connection too.
    reopened = call(todo_server, "PUT", f"/todo/{kept['id']}", {"completed": False})
    assert client.wait_state("i", lambda s: s["completedAt"] is None) == reopened
    assert client.wait_state("g", lambda s: s[0]["completedAt"] is None) == [reopened, added]
    assert client.errors() == []


BURST = 8000


def test_client_resyncs_after_a_restart_that_follows_a_burst_on_another_connection(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory
) -> None:
    server = surge_server(project_with_steps(tmp_path, burst_step=BURST_STEP))
    todo = create_todo(server, "watched")
    client = node_client(server.ws_url)
    client.subscribe_item("i", "todo", "inbox", todo["id"])
    client.wait_state("i", lambda s: s is not None)

    # Regression: the envelope clock was process-wide and strictly increasing, so a burst ran
    # it seconds ahead of the wall clock; after a restart the new process stamped from the wall
    # clock again and the npm client, which keeps its last timestamps across reconnects, dropped
    # the resync and every later frame. Only the busy connection itself may run ahead.
    with group_drain(server.ws_url, "todo", "busy") as drain:
        poll(lambda: drain.count >= 1, 5, "the drain's sync")
        call(server, "POST", "/burst", {"group": "busy", "count": BURST})
        poll(lambda: drain.count >= BURST + 1, 30, f"{BURST} frames at the drain")
    lead = drain.last_timestamp - time.time_ns() // 1_000_000
    if lead < 3000:
        pytest.skip(f"this machine fanned {BURST} changes out too slowly (busy lead {lead} ms)")

    call(server, "PUT", f"/todo/{todo['id']}", {"completed": True})
    client.wait_state("i", lambda s: s["completedAt"] is not None)
    before_restart = client.frames()[-1]["timestamp"]

    mark = client.mark()
    server.kill()
    client.wait_for(lambda m: m["type"] == "socket" and m["state"] == "close", since=mark)
    server.start()
    reopened = call(server, "PUT", f"/todo/{todo['id']}", {"completed": False})
    sync = client.wait_for(
        lambda m: m["type"] == "frame" and '"sync"' in m["data"],
        timeout=10,
        since=mark,
        what="the resync after the restart",
    )
    sync_timestamp = json.loads(sync["data"])["timestamp"]
    try:
        state = client.wait_state("i", lambda s: s["completedAt"] is None, timeout=4)
    except AssertionError:
        raise AssertionError(
            f"the npm client kept its stale item {client.get_state('i')}: the resync "
            f"{sync['data']} is stamped {before_restart - sync_timestamp} ms before the last "
            f"frame it saw from the previous process ({before_restart}; the busy connection's lead was {lead} ms)"
        ) from None
    assert state == reopened


def test_client_connects_with_the_authorization_subprotocol_pair(
    todo_server: SurgeProcess, node_client: NodeFactory
) -> None:
    todo = create_todo(todo_server, "with a token")
    client = node_client(todo_server.ws_url, ("Authorization", "secret-token"))
    client.subscribe_group("g", "todo", "inbox")
    assert client.wait_state("g", lambda s: len(s) == 1) == [todo]
    assert client.errors() == []


# -- several clients, isolation -----------------------------------------------------------------


def test_two_clients_see_each_others_changes(
    todo_server: SurgeProcess, node_client: NodeFactory
) -> None:
    ada, bob = node_client(todo_server.ws_url), node_client(todo_server.ws_url)
    for client in (ada, bob):
        client.subscribe_group("g", "todo", "inbox")
        client.on_event("g", "typing")
        client.wait_synced("g")

    from_ada = create_todo(todo_server, "from ada")
    for client in (ada, bob):
        assert client.wait_state("g", lambda s: len(s) == 1) == [from_ada]
    from_bob = create_todo(todo_server, "from bob")
    done_by_ada = call(todo_server, "PUT", f"/todo/{from_bob['id']}", {"completed": True})
    call(todo_server, "DELETE", f"/todo/{from_ada['id']}")
    call(todo_server, "POST", "/todo/typing", {"userId": "bob", "isTyping": True})

    for client in (ada, bob):
        client.wait_for(lambda m: m["type"] == "event", what="bob's typing event")
        assert client.wait_state("g", lambda s: ids(s) == [from_bob["id"]]) == [done_by_ada]
        assert client.events("g", "typing") == [{"userId": "bob", "isTyping": True}]


def test_item_subscriber_of_another_group_receives_nothing_for_the_same_id(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory
) -> None:
    server = surge_server(project_with_steps(tmp_path, any_group_step=ANY_GROUP_STEP))
    watcher = node_client(server.ws_url)
    watcher.subscribe_item("b-item", "todo", "B", "same")
    watcher.subscribe_group("b-group", "todo", "B")
    watcher.on_event("b-item", "reaction")
    watcher.on_event("b-group", "reaction")
    watcher.wait_synced("b-item")
    watcher.wait_synced("b-group")

    for body in (
        {"action": "set", "description": "A's secret"},
        {"action": "set", "description": "A's secret, edited"},
        {"action": "send"},
        {"action": "delete"},
    ):
        call(server, "POST", "/groups/A/todos/same", body)
    # Barrier: a change of B's item, sent after every write to A.
    mine = call(server, "POST", "/groups/B/todos/same", {"action": "set", "description": "B's"})
    assert watcher.wait_state("b-item", lambda s: s is not None) == mine
    assert watcher.wait_state("b-group", lambda s: len(s) == 1) == [mine]

    leaked = [f for f in watcher.frames() if f.get("groupId") != "B"]
    assert leaked == [], f"frames of group A reached a group-B-only connection: {leaked}"
    assert state_history(watcher, "b-item") == [None, mine]
    assert state_history(watcher, "b-group") == [[], [mine]]
    assert watcher.events("b-item", "reaction") == watcher.events("b-group", "reaction") == []


def test_leave_ends_one_subscription_and_keeps_the_other_of_the_same_group_live(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory
) -> None:
    server = surge_server(project_with_steps(tmp_path, any_group_step=ANY_GROUP_STEP))
    client = node_client(server.ws_url)
    for key, group in (("a", "inbox"), ("b", "inbox"), ("barrier", "elsewhere")):
        client.subscribe_group(key, "todo", group)
        client.wait_synced(key)

    client.unsubscribe("a")
    seen = create_todo(server, "b still listens")
    assert client.wait_state("b", lambda s: len(s) == 1) == [seen]

    client.unsubscribe("b")
    unseen = create_todo(server, "nobody listens")
    # Barrier: a later change on a subscription that is still live.
    call(server, "POST", "/groups/elsewhere/todos/x", {"action": "set", "description": "x"})
    client.wait_state("barrier", lambda s: len(s) == 1)
    assert unseen["id"] not in json.dumps(client.frames()), "a frame arrived after both leaves"
    assert client.get_state("b") == [seen]


def test_join_of_an_unknown_stream_gets_an_access_denied_event_and_the_socket_stays_open(
    todo_server: SurgeProcess, node_client: NodeFactory
) -> None:
    client = node_client(todo_server.ws_url)
    client.subscribe_group("nope", "no-such-stream", "inbox", events=("error",))
    client.subscribe_item("nope-item", "no-such-stream", "inbox", "x", events=("error",))
    event = client.wait_for(lambda m: m["type"] == "event" and m["key"] == "nope")
    assert event["data"]["code"] == "STREAM_ACCESS_DENIED"
    item_event = client.wait_for(lambda m: m["type"] == "event" and m["key"] == "nope-item")
    assert item_event["data"]["code"] == "STREAM_ACCESS_DENIED"
    assert client.get_state("nope") == [] and client.get_state("nope-item") is None

    todo = create_todo(todo_server, "still served")
    client.subscribe_group("g", "todo", "inbox")
    assert client.wait_state("g", lambda s: len(s) == 1) == [todo]
    closes = [m for m in client.messages if m["type"] == "socket" and m["state"] == "close"]
    assert closes == []


@pytest.mark.parametrize("how", ["subprotocol", "query"])
def test_auth_token_reaches_can_access_and_a_refused_join_gets_the_error_event(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory, how: str
) -> None:
    project = project_with_steps(tmp_path, private_stream=PRIVATE_STREAM)
    (project / "surge.config.py").write_text(AUTH_CONFIG.lstrip())
    server = surge_server(project)
    if how == "subprotocol":
        ada = node_client(server.ws_url, ("Authorization", "ada"))
    else:
        ada = node_client(f"{server.ws_url}?authToken=ada")
    anonymous = node_client(server.ws_url)

    ada.subscribe_group("mine", "private", "ada", events=("error",))
    ada.subscribe_group("theirs", "private", "bob", events=("error",))
    anonymous.subscribe_group("mine", "private", "ada", events=("error",))
    ada.wait_synced("mine")
    denied = ada.wait_for(lambda m: m["type"] == "event" and m["key"] == "theirs")
    assert denied["data"]["code"] == "STREAM_ACCESS_DENIED"
    denied = anonymous.wait_for(lambda m: m["type"] == "event" and m["key"] == "mine")
    assert denied["data"]["code"] == "STREAM_ACCESS_DENIED"
    assert ada.events("mine", "error") == []
    assert ada.errors() == anonymous.errors() == []


def stall_through_a_spam(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory, config: str
) -> tuple[NodeClient, dict[str, Any]]:
    """A group subscriber stopped (SIGSTOP) while one item gets 3,000 updates of 8 KB, far past
    its socket buffers and the 64-frame outbox of ``config``; returns it running again and the
    item's final state."""
    project = project_with_steps(tmp_path, spam_step=SPAM_STEP)
    (project / "surge.config.py").write_text(config.lstrip())
    server = surge_server(project)
    todo = create_todo(server, "hot item")
    client = node_client(server.ws_url)
    client.subscribe_group("g", "todo", "inbox")
    client.wait_state("g", lambda s: len(s) == 1)
    client.proc.send_signal(signal.SIGSTOP)
    try:
        final = call(server, "POST", f"/todo/{todo['id']}/spam", {"count": 3000, "size": 8000})
    finally:
        client.proc.send_signal(signal.SIGCONT)
    assert final["description"] == "final"
    return client, final


def test_a_stalled_client_is_closed_with_1013_and_heals_by_its_own_reconnect_and_resync(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory
) -> None:
    client, final = stall_through_a_spam(tmp_path, surge_server, node_client, SMALL_OUTBOX_CONFIG)
    close = client.wait_for(
        lambda m: m["type"] == "socket" and m["state"] == "close", timeout=20, what="the close"
    )
    assert close["code"] == 1013
    client.wait_for(lambda m: m["type"] == "socket" and m["state"] == "open", timeout=10)
    assert client.wait_state("g", lambda s: s[0]["description"] == "final", timeout=10) == [final]
    assert client.errors() == []


def test_a_stalled_client_under_the_latest_value_policy_stays_connected_and_ends_current(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory
) -> None:
    # With Limits(slow_consumer="latest") the queued updates of the one item collapse into the
    # newest instead of closing the connection.
    client, final = stall_through_a_spam(
        tmp_path, surge_server, node_client, SMALL_LATEST_OUTBOX_CONFIG
    )
    assert client.wait_state("g", lambda s: s[0]["description"] == "final", timeout=20) == [final]
    sockets = [m for m in list(client.messages) if m["type"] == "socket"]
    assert [m["state"] for m in sockets] == ["open"]  # never closed, never reconnected
    # Values skipped, none reordered: the descriptions the client saw only go forward.
    seen = [s[0]["description"] for s in state_history(client, "g") if s]
    numbers = [int(d.split(":")[0]) for d in seen if ":" in d]
    assert numbers == sorted(numbers) and len(seen) < 3000
    assert client.errors() == []
