"""Token expiry, reauthorize and revoke across two `surge start` instances sharing Redis, with
the real npm client (driver.mjs) and Surge's Python client (issue 15 item 5).

The project (written into tmp_path) authenticates ``<user>.<exp>`` tokens (``exp`` in epoch
seconds, 0: none; users listed in the REVOKED file are refused), lets a user join the groups the
ACL file gives them, and has admin steps calling ``ctx.streams.reauthorize`` / ``revoke``. Both
instances read the same files, so a change of the ACL is seen by both; the commands themselves
travel through Redis. Every cut must reach a client on the *other* instance in under a second.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

import surge.client
from compat.conftest import NodeClient
from e2e.redis_env import redis_env  # noqa: F401 - fixture
from e2e.surge_process import SurgeProcess

pytestmark = pytest.mark.timeout(120)

ServerFactory = Callable[..., SurgeProcess]
NodeFactory = Callable[..., NodeClient]
CUT_WITHIN_S = 1.0

CONFIG = """
import json
import os

from surge import Config, StreamAuth, extract_auth_token


def authenticate(request):
    token = extract_auth_token(request)
    if token is None:
        return None
    user, _, exp = token.partition(".")
    with open(os.environ["SURGE_TEST_REVOKED"]) as revoked:
        if user in json.load(revoked):
            raise PermissionError("revoked")
    context = {"userId": user}
    if float(exp or 0) > 0:
        context["exp"] = float(exp)
    return context


config = Config(stream_auth=StreamAuth(authenticate=authenticate))
"""

STREAM = """
import json
import os

from surge import StreamConfig


def can_access(sub, auth):
    with open(os.environ["SURGE_TEST_ACL"]) as acl:
        return auth is not None and sub.groupId in json.load(acl).get(auth["userId"], [])


config = StreamConfig(
    name="notes",
    schema={"type": "object", "properties": {"id": {"type": "string"},
            "text": {"type": "string"}}, "required": ["id", "text"]},
    can_access=can_access,
)
"""

STEPS = """
from surge import ApiResponse, ApiRouteConfig

config = ApiRouteConfig(name="Admin", method="POST", path="/admin/:action")


async def handler(req, ctx):
    action, body = req.path_params["action"], req.body
    if action == "reauthorize":
        return ApiResponse(200, {"count": await ctx.streams.reauthorize({"userId": body["userId"]})})
    if action == "revoke":
        return ApiResponse(200, {"count": await ctx.streams.revoke({"userId": body["userId"]})})
    note = await ctx.streams.notes.set(body["group"], body["id"], {"id": body["id"],
                                                                  "text": body["text"]})
    return ApiResponse(200, note)
"""


class Project:
    """The test project and its two shared files."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = root / "project"
        (self.dir / "steps").mkdir(parents=True)
        (self.dir / "surge.config.py").write_text(CONFIG)
        (self.dir / "steps" / "notes_stream.py").write_text(STREAM)
        (self.dir / "steps" / "admin_step.py").write_text(STEPS)
        self.acl = root / "acl.json"
        self.revoked = root / "revoked.json"
        self.set_acl({"alice": ["g1", "g2"], "bob": ["g1", "g2"]})
        self.set_revoked([])
        monkeypatch.setenv("SURGE_TEST_ACL", str(self.acl))
        monkeypatch.setenv("SURGE_TEST_REVOKED", str(self.revoked))

    def set_acl(self, acl: dict[str, list[str]]) -> None:
        self.acl.write_text(json.dumps(acl))

    def set_revoked(self, users: list[str]) -> None:
        self.revoked.write_text(json.dumps(users))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return Project(tmp_path, monkeypatch)


@pytest.fixture
def instances(
    project: Project,
    redis_env: str,  # noqa: F811
    surge_server: ServerFactory,
) -> tuple[SurgeProcess, SurgeProcess]:
    return surge_server(project.dir), surge_server(project.dir)


_HTTP: list[httpx2.Client] = []  # one client per test: no per-request setup in a timed cut


@pytest.fixture(autouse=True)
def http_client() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10) as client:
        _HTTP.append(client)
        try:
            yield client
        finally:
            _HTTP.remove(client)


def post(server: SurgeProcess, path: str, body: dict[str, Any]) -> Any:
    response = _HTTP[-1].post(f"{server.url}{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def cut_time(what: str, started: float) -> float:
    elapsed = time.monotonic() - started
    print(f"{what}: {elapsed * 1000:.0f} ms")
    assert elapsed < CUT_WITHIN_S, f"{what} took {elapsed:.2f} s"
    return elapsed


def socket_closed(client: NodeClient, since: int, timeout: float = 10.0) -> dict[str, Any]:
    return client.wait_for(
        lambda m: m["type"] == "socket" and m["state"] == "close",
        timeout,
        "the socket to close",
        since,
    )


def test_npm_client_is_closed_with_4001_at_expiry_and_python_client_refreshes_its_token(
    instances: tuple[SurgeProcess, SurgeProcess], node_client: NodeFactory
) -> None:
    a, b = instances
    exp = time.time() + 5.0  # time for node to start and connect on a loaded machine
    alice = node_client(a.ws_url, ("Authorization", f"alice.{exp}"))
    alice.subscribe_group("g", "notes", "g1")
    assert alice.wait_synced("g") == []
    closed = socket_closed(alice, 0)
    assert closed["code"] == 4001
    assert exp <= time.time() < exp + 2.0

    async def python_client() -> list[str]:
        tokens: list[str] = []

        def token() -> str:
            tokens.append(f"bob.{time.time() + (1.5 if not tokens else 3600)}")
            return tokens[-1]

        async with surge.client.connect(b.ws_url, token=token) as bob:
            sub = await bob.subscribe_group("notes", "g1")
            await bob.wait_state(surge.client.ConnectionState.RECONNECTING, timeout=15)
            await bob.wait_open(timeout=15)  # reconnected (and resumed or resynced)
            assert isinstance(bob.last_error, surge.client.TransportClosed)
            assert bob.last_error.code == 4001
            await asyncio.to_thread(
                post, a, "/admin/note", {"group": "g1", "id": "n1", "text": "from A"}
            )
            items = await sub.wait(lambda items: len(items) == 1, timeout=10)
            assert items[0]["text"] == "from A"
        return tokens

    assert len(asyncio.run(python_client())) >= 2


def test_reauthorize_on_one_instance_removes_denied_subscriptions_on_the_other(
    project: Project, instances: tuple[SurgeProcess, SurgeProcess], node_client: NodeFactory
) -> None:
    a, b = instances
    alice = node_client(a.ws_url, ("Authorization", "alice.0"))
    alice.subscribe_group("g1", "notes", "g1", events=("error",))
    alice.subscribe_group("g2", "notes", "g2", events=("error",))
    assert alice.wait_synced("g1") == alice.wait_synced("g2") == []

    async def scenario() -> None:
        async with surge.client.connect(b.ws_url, token="bob.0") as bob:
            bob_g1 = await bob.subscribe_group("notes", "g1")
            bob_g2 = await bob.subscribe_group("notes", "g2")
            project.set_acl({"alice": ["g1"], "bob": ["g2"]})

            # On B, for alice (connected to A): the npm client gets the error within a second.
            mark = alice.mark()
            started = time.monotonic()
            assert (await asyncio.to_thread(post, b, "/admin/reauthorize", {"userId": "alice"}))[
                "count"
            ] == 0  # alice has no connection on B
            denied = await asyncio.to_thread(
                alice.wait_for,
                lambda m: m["type"] == "event" and m["event"] == "error",
                5.0,
                "alice's STREAM_ACCESS_DENIED",
                mark,
            )
            cut_time("reauthorize via B -> npm client on A", started)
            assert denied["key"] == "g2"
            assert denied["data"]["code"] == "STREAM_ACCESS_DENIED"

            # On A, for bob (connected to B): his g1 subscription ends with the error.
            started = time.monotonic()
            await asyncio.to_thread(post, a, "/admin/reauthorize", {"userId": "bob"})
            with pytest.raises(surge.client.SubscriptionError) as ended:
                await bob_g1.wait(lambda _: False, timeout=5)
            cut_time("reauthorize via A -> Python client on B", started)
            assert ended.value.code == "STREAM_ACCESS_DENIED"
            assert bob.subscriptions == [bob_g2]

            # Exactly those: writes to both groups reach only who may still see them.
            for group in ("g2", "g1"):
                await asyncio.to_thread(
                    post, b, "/admin/note", {"group": group, "id": f"n-{group}", "text": group}
                )
            await bob_g2.wait(lambda items: [i["id"] for i in items] == ["n-g2"], timeout=10)

    asyncio.run(scenario())
    alice.wait_state("g1", lambda s: [i["id"] for i in s] == ["n-g1"])
    assert alice.get_state("g2") == []
    g2_data = [
        f for f in alice.frames() if f.get("groupId") == "g2" and f["event"]["type"] != "event"
    ]
    assert [f["event"]["type"] for f in g2_data] == ["sync"]  # nothing after the removal


def test_revoke_on_one_instance_closes_connections_on_the_other_with_4003(
    project: Project, instances: tuple[SurgeProcess, SurgeProcess], node_client: NodeFactory
) -> None:
    a, b = instances
    project.set_acl({"alice": ["g1"], "bob": ["g1"], "carol": ["g1"]})
    alice = node_client(a.ws_url, ("Authorization", "alice.0"))
    carol = node_client(a.ws_url, ("Authorization", "carol.0"))
    alice.subscribe_group("g", "notes", "g1")
    carol.subscribe_group("g", "notes", "g1")
    alice.wait_synced("g")
    carol.wait_synced("g")

    async def scenario() -> None:
        async with surge.client.connect(b.ws_url, token="bob.0") as bob:
            await bob.subscribe_group("notes", "g1")
            project.set_revoked(["alice", "bob"])  # their tokens stop working, too

            mark = alice.mark()
            started = time.monotonic()
            await asyncio.to_thread(post, b, "/admin/revoke", {"userId": "alice"})
            closed = await asyncio.to_thread(socket_closed, alice, mark, 5.0)
            cut_time("revoke via B -> npm client on A", started)
            assert closed["code"] == 4003

            started = time.monotonic()
            await asyncio.to_thread(post, a, "/admin/revoke", {"userId": "bob"})
            # Surge's client does not come back with revoked credentials: it closes.
            await bob.wait_state(surge.client.ConnectionState.CLOSED, timeout=5)
            cut_time("revoke via A -> Python client on B", started)
            assert isinstance(bob.last_error, surge.client.TransportClosed)
            assert bob.last_error.code == 4003
            assert bob.connections == 1
            with pytest.raises(surge.client.AccessRevoked):
                await bob.subscribe_group("notes", "g1")

    asyncio.run(scenario())
    # carol was not matched: still connected, still served.
    post(b, "/admin/note", {"group": "g1", "id": "n1", "text": "for carol"})
    carol.wait_state("g", lambda s: [i["id"] for i in s] == ["n1"])
    assert not [m for m in carol.messages if m["type"] == "socket" and m["state"] == "close"]
