"""Presence with Motia's unmodified npm client (``onEvent("presence", ...)``), on the chat example.

One ``surge start``: a user's second tab is no join, closing one tab is no leave, the last tab is.
Two ``surge start`` on one Redis: a member on either instance is seen from both, and when one
instance is killed with -9 its members leave, within the bound and announced once.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from compat.conftest import NodeClient
from e2e.redis_env import redis_env  # noqa: F401 - fixture
from e2e.surge_process import SurgeProcess

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat"

ServerFactory = Callable[..., SurgeProcess]
NodeFactory = Callable[..., NodeClient]

ALICE = {"id": "alice", "meta": {"plan": "pro"}}
BOB = {"id": "bob", "meta": {"plan": "free"}}
PRESENCE_TIMEOUT = 4.0  # the killed instance's members are gone this long after its last beat


def copy_chat(target: Path, presence_timeout: float | None = None) -> Path:
    shutil.copytree(CHAT, target, ignore=shutil.ignore_patterns(".surge", "__pycache__"))
    if presence_timeout is not None:
        (target / "surge.config.py").write_text(
            "from auth import AuthContext, authenticate\n"
            "from surge import Config, PresenceSettings, StreamAuth\n\n"
            "config = Config(\n"
            "    stream_auth=StreamAuth(context_schema=AuthContext, authenticate=authenticate),\n"
            f"    presence=PresenceSettings(timeout={presence_timeout}),\n"
            ")\n"
        )
    return target


def online(server: SurgeProcess, project: str = "project-b") -> Any:
    response = httpx2.get(f"{server.url}/chat/{project}/online", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def presence(client: NodeClient, key: str = "chat") -> list[dict[str, Any]]:
    """Every presence event the client's ``onEvent("presence")`` listener got so far."""
    return client.events(key, "presence")


def wait_presence(
    client: NodeClient, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    message = client.wait_for(
        lambda m: m["type"] == "event" and m["event"] == "presence" and predicate(m["data"]),
        timeout,
        "a presence event",
    )
    data: dict[str, Any] = message["data"]
    return data


def members_seen(client: NodeClient, key: str = "chat") -> list[str]:
    """The member set the events so far make, applied as set operations in order."""
    members: dict[str, Any] = {}
    for data in presence(client, key):
        if data["action"] == "sync":
            members = {m["id"]: m for m in data["members"]}
        elif data["action"] == "join":
            members[data["member"]["id"]] = data["member"]
        else:
            members.pop(data["member"]["id"], None)
    return sorted(members)


def flushed(client: NodeClient, server: SurgeProcess, project: str = "project-b") -> None:
    """Wait until every presence event already published reached ``client``: a ``typing`` event
    sent now travels the same path after them."""
    marker = f"marker-{time.monotonic_ns()}"
    response = httpx2.post(
        f"{server.url}/chat/{project}/typing", json={"userId": marker}, timeout=5
    )
    assert response.status_code == 202, response.text
    client.wait_for(
        lambda m: m["type"] == "event" and m["event"] == "typing" and m["data"]["userId"] == marker,
        10,
        "the typing marker",
    )


def count(client: NodeClient, action: str, member_id: str) -> int:
    return sum(
        1
        for data in presence(client)
        if data["action"] == action and data["member"]["id"] == member_id
    )


def test_tabs_joins_and_leaves_reach_motias_client_through_on_event(
    tmp_path: Path, surge_server: ServerFactory, node_client: NodeFactory
) -> None:
    server = surge_server(copy_chat(tmp_path / "chat"))
    alice = node_client(server.ws_url, ("Authorization", "alice-token"))
    alice.subscribe_group("chat", "chatMessage", "project-b", events=("presence", "typing"))
    assert alice.wait_synced("chat") == []
    first = wait_presence(alice, lambda d: d["action"] == "sync")
    assert first["members"] == [ALICE]

    bob_tab1 = node_client(f"{server.ws_url}?authToken=bob-token")
    bob_tab1.subscribe_group("chat", "chatMessage", "project-b", events=("presence",))
    assert wait_presence(bob_tab1, lambda d: d["action"] == "sync")["members"] == [ALICE, BOB]
    assert wait_presence(alice, lambda d: d.get("member", {}).get("id") == "bob")["member"] == BOB

    bob_tab2 = node_client(f"{server.ws_url}?authToken=bob-token")
    bob_tab2.subscribe_group("chat", "chatMessage", "project-b", events=("presence",))
    assert wait_presence(bob_tab2, lambda d: d["action"] == "sync")["members"] == [ALICE, BOB]
    bob_tab1.close()  # one tab closed: bob is still online
    assert online(server) == [ALICE, BOB]
    flushed(alice, server)
    assert count(alice, "join", "bob") == 1 and count(alice, "leave", "bob") == 0

    bob_tab2.unsubscribe("chat")  # the last one: a leave frame from the npm client
    left = wait_presence(alice, lambda d: d["action"] == "leave")  # alice never leaves here
    assert left["member"] == BOB
    assert online(server) == [ALICE]
    flushed(alice, server)
    assert count(alice, "leave", "bob") == 1
    assert members_seen(alice) == ["alice"]
    assert alice.errors() == bob_tab1.errors() == bob_tab2.errors() == []


@pytest.mark.timeout(120)
def test_a_killed_instances_members_leave_within_the_bound_once(
    tmp_path: Path,
    redis_env: str,  # noqa: F811
    surge_server: ServerFactory,
    node_client: NodeFactory,
) -> None:
    a = surge_server(copy_chat(tmp_path / "a", PRESENCE_TIMEOUT))
    b = surge_server(copy_chat(tmp_path / "b", PRESENCE_TIMEOUT))
    alice = node_client(a.ws_url, ("Authorization", "alice-token"))
    alice.subscribe_group("chat", "chatMessage", "project-b", events=("presence", "typing"))
    assert wait_presence(alice, lambda d: d["action"] == "sync")["members"] == [ALICE]

    bob = node_client(b.ws_url, ("Authorization", "bob-token"))
    bob.subscribe_group("chat", "chatMessage", "project-b", events=("presence",))
    assert wait_presence(bob, lambda d: d["action"] == "sync")["members"] == [ALICE, BOB]
    assert wait_presence(alice, lambda d: d.get("member", {}).get("id") == "bob")["member"] == BOB
    assert online(a) == online(b) == [ALICE, BOB]

    b.kill()  # SIGKILL: no goodbye, its heartbeats just stop
    killed = time.monotonic()
    left = wait_presence(alice, lambda d: d["action"] == "leave", timeout=PRESENCE_TIMEOUT + 10)
    took = time.monotonic() - killed
    assert left["member"] == BOB
    # Within the configured bound, plus slack for scheduling on a busy machine.
    assert took < PRESENCE_TIMEOUT + 3, f"bob left {took:.1f} s after the kill"
    assert online(a) == [ALICE]

    # Announced once, even with a later sweep: wait past another bound, then flush the feed.
    time.sleep(PRESENCE_TIMEOUT)  # nothing to wait *for*: this checks that nothing more comes
    flushed(alice, a)
    assert count(alice, "leave", "bob") == 1
    assert count(alice, "leave", "alice") == 0
    assert members_seen(alice) == ["alice"]
    assert alice.errors() == []
