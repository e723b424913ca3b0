"""The guide's chat example (examples/chat) with the real npm client: who can see what.

alice belongs to project-a and project-b, bob only to project-b; the chatMessage stream's
``can_access`` checks the group against the auth context's ``projectIds``; the announcement
stream has no ``can_access``. Tokens travel both ways the clients send them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from compat.conftest import NodeClient
from e2e.surge_process import SurgeProcess

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat"

ServerFactory = Callable[..., SurgeProcess]
NodeFactory = Callable[..., NodeClient]


@pytest.fixture
def chat_server(tmp_path: Path, surge_server: ServerFactory) -> SurgeProcess:
    project = tmp_path / "chat"
    shutil.copytree(CHAT, project, ignore=shutil.ignore_patterns(".surge", "__pycache__"))
    return surge_server(project)


def post(server: SurgeProcess, path: str, body: dict[str, Any]) -> Any:
    response = httpx2.post(f"{server.url}{path}", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def chat_frames(client: NodeClient, group: str) -> list[dict[str, Any]]:
    """Frames carrying chat data of ``group`` (the access-denied error event is not data)."""
    return [
        f
        for f in client.frames()
        if f.get("streamName") == "chatMessage"
        and f["groupId"] == group
        and f["event"].get("event", {}).get("type") != "error"
    ]


def test_members_see_their_projects_and_a_non_member_is_denied_and_sees_nothing(
    chat_server: SurgeProcess, node_client: NodeFactory
) -> None:
    alice = node_client(chat_server.ws_url, ("Authorization", "alice-token"))
    bob = node_client(f"{chat_server.ws_url}?authToken=bob-token")

    alice.subscribe_group("a", "chatMessage", "project-a", events=("error",))
    bob.subscribe_group("a", "chatMessage", "project-a", events=("error",))
    bob.subscribe_group("b", "chatMessage", "project-b", events=("error",))
    assert alice.wait_synced("a") == []
    assert bob.wait_synced("b") == []
    denied = bob.wait_for(lambda m: m["type"] == "event" and m["key"] == "a")
    assert denied["data"]["code"] == "STREAM_ACCESS_DENIED"

    secret = post(chat_server, "/chat/project-a", {"userId": "alice", "message": "for a only"})
    shared = post(chat_server, "/chat/project-b", {"userId": "bob", "message": "for b"})
    assert alice.wait_state("a", lambda s: len(s) == 1) == [secret]
    # bob sees project-b's message, which was sent after project-a's: had anything of
    # project-a been routed to him, it would have arrived before this.
    assert bob.wait_state("b", lambda s: len(s) == 1) == [shared]
    assert chat_frames(bob, "project-a") == []
    assert bob.get_state("a") == []
    assert alice.errors() == bob.errors() == []


def test_anonymous_clients_may_follow_a_stream_without_can_access_but_not_the_chat(
    chat_server: SurgeProcess, node_client: NodeFactory
) -> None:
    anonymous = node_client(chat_server.ws_url)
    anonymous.subscribe_group("news", "announcement", "all")
    anonymous.subscribe_group("chat", "chatMessage", "project-b", events=("error",))
    assert anonymous.wait_synced("news") == []
    denied = anonymous.wait_for(lambda m: m["type"] == "event" and m["key"] == "chat")
    assert denied["data"]["code"] == "STREAM_ACCESS_DENIED"

    post(chat_server, "/chat/project-b", {"userId": "bob", "message": "members only"})
    news = post(chat_server, "/announcements", {"text": "hello everyone"})
    assert anonymous.wait_state("news", lambda s: len(s) == 1) == [news]
    assert chat_frames(anonymous, "project-b") == []


def test_a_member_rejoins_after_a_restart_and_is_authorized_again(
    chat_server: SurgeProcess, node_client: NodeFactory
) -> None:
    bob = node_client(chat_server.ws_url, ("Authorization", "bob-token"))
    bob.subscribe_group("b", "chatMessage", "project-b", events=("error",))
    bob.subscribe_group("a", "chatMessage", "project-a", events=("error",))
    assert bob.wait_synced("b") == []
    bob.wait_for(lambda m: m["type"] == "event" and m["key"] == "a")

    mark = bob.mark()
    chat_server.stop()
    bob.wait_for(lambda m: m["type"] == "socket" and m["state"] == "close", since=mark)
    chat_server.start()
    after = post(chat_server, "/chat/project-b", {"userId": "alice", "message": "after restart"})
    post(chat_server, "/chat/project-a", {"userId": "alice", "message": "still secret"})
    assert bob.wait_state("b", lambda s: len(s) == 1, timeout=10) == [after]
    # The re-join of project-a was checked again and denied again: nothing of it arrived.
    denial = bob.wait_for(lambda m: m["type"] == "event" and m["key"] == "a", since=mark)
    assert denial["data"]["code"] == "STREAM_ACCESS_DENIED"
    assert chat_frames(bob, "project-a") == []
