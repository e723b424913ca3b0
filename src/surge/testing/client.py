"""``TestClient`` / ``AsyncTestClient``: a Surge app in-process, no port, with its own store.

```python
from surge.testing import TestClient

def test_create_todo_reaches_subscribers():
    with TestClient("examples/todo") as client:
        inbox = client.subscribe_group("todo", "inbox")
        response = client.post("/todo", json={"description": "buy milk"})
        assert response.status_code == 200
        inbox.wait(lambda todos: len(todos) == 1, timeout=5)
```

What it does: builds the project's app (``surge.create_app``) with a fresh in-memory store, an
in-memory queue and state store (never the project's ``.surge/``, never Redis from
``surge.config.py``), runs its lifespan on enter and exit, sends HTTP requests through httpx2's
ASGI transport (httpx2 ``Response`` objects), and speaks the stream protocol with
``surge.client`` over an in-process ASGI WebSocket. ``TestClient`` is the synchronous form: the
app runs on an event loop in a background thread (as Starlette's TestClient does); stream
callbacks (``on_change``, ``on_event``) run on that thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx2

from surge.client import Backoff, Change, Client, GroupSubscription, ItemSubscription
from surge.client.subscription import Subscription
from surge.client.transport import TokenVia
from surge.project import load_config
from surge.queues.sqlite import SqliteQueue
from surge.server.app import SurgeApp, create_app
from surge.state.memory import MemoryStateStore
from surge.streams.adapter import StreamAdapter
from surge.streams.control import AccessMatch
from surge.streams.stores.memory import MemoryStreamAdapter
from surge.streams.stream import GroupPage, Stream, Streams
from surge.testing.asgi import AsgiWebSocketTransport, Lifespan

__all__ = [
    "AsyncTestClient",
    "SyncGroupSubscription",
    "SyncItemSubscription",
    "SyncStream",
    "SyncStreamClient",
    "SyncStreams",
    "TestClient",
]

T = TypeVar("T")
S = TypeVar("S")
StoreChoice = Literal["memory"] | StreamAdapter
BASE_URL = "http://testserver"
# In tests, a server that went away should be found again at once.
TEST_BACKOFF = Backoff(initial=0.01, max_delay=0.2)
# The longest any sync call may block, so a hang fails the test instead of stalling it.
CALL_TIMEOUT = 60.0


def isolated_app(project_dir: str | Path, store: StoreChoice = "memory") -> SurgeApp:
    """The project's app on a fresh in-memory store, queue and state store.

    ``surge.config.py`` is loaded as usual (auth, limits, CORS), but its adapters are replaced.
    """
    root = Path(project_dir).resolve()
    config = load_config(root)
    adapter = MemoryStreamAdapter() if store == "memory" else store
    if not isinstance(adapter, StreamAdapter):
        raise ValueError(f"store must be 'memory' or a StreamAdapter, not {store!r}")
    adapters = dataclasses.replace(
        config.adapters, streams=adapter, queue=SqliteQueue(":memory:"), state=MemoryStateStore()
    )
    return create_app(root, config=dataclasses.replace(config, adapters=adapters))


class AsyncTestClient:
    """The in-process test client for async tests (pytest-asyncio): ``async with``.

    Args:
        app: a project directory, or an app built by ``surge.create_app`` (used as it is, with
            its own adapters).
        store: ``"memory"`` (a fresh, empty store per client) or a ``StreamAdapter``.
        token: the stream auth token of ``subscribe_*`` (the ``Authorization,<token>``
            subprotocol pair, or ``?authToken=`` with ``token_via="query"``).
        raise_server_exceptions: an exception escaping the app fails the request call.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: str | Path | SurgeApp,
        *,
        store: StoreChoice = "memory",
        token: str | None = None,
        token_via: TokenVia = "subprotocol",
        raise_server_exceptions: bool = True,
        base_url: str = BASE_URL,
    ) -> None:
        self._source = app
        self._store = store
        self._token = token
        self._token_via: TokenVia = token_via
        self._raise = raise_server_exceptions
        self._base_url = base_url
        self._app: SurgeApp | None = None
        self._lifespan: Lifespan | None = None
        self._http: httpx2.AsyncClient | None = None
        self._stream_client: Client | None = None
        self._clients: list[Client] = []

    @property
    def app(self) -> SurgeApp:
        """The app under test (``app.runtime`` for the hub, adapter and registry)."""
        if self._app is None:
            raise RuntimeError("use the client inside `async with`")
        return self._app

    @property
    def streams(self) -> Streams:
        """The app's streams, as handlers see them: ``await client.streams.todo.set(...)``."""
        return self.app.runtime.streams

    @property
    def http(self) -> httpx2.AsyncClient:
        """The httpx2 client bound to the app (for what the shortcuts do not cover)."""
        if self._http is None:
            raise RuntimeError("use the client inside `async with`")
        return self._http

    async def __aenter__(self) -> AsyncTestClient:
        source = self._source
        app = source if isinstance(source, SurgeApp) else isolated_app(source, self._store)
        lifespan = Lifespan(app)
        await lifespan.startup()
        self._app, self._lifespan = app, lifespan
        self._http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app, raise_app_exceptions=self._raise),
            base_url=self._base_url,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in self._clients:
            await client.close()
        self._clients.clear()
        self._stream_client = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._lifespan is not None:
            await self._lifespan.shutdown()
            self._lifespan = None

    # -- HTTP --------------------------------------------------------------------------------------

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        """Send a request to the app (httpx2 keywords: ``json=``, ``params=``, ``headers=``)."""
        return await self.http.request(method, url, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx2.Response:
        """GET ``url``."""
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx2.Response:
        """POST ``url``."""
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx2.Response:
        """PUT ``url``."""
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx2.Response:
        """PATCH ``url``."""
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx2.Response:
        """DELETE ``url``."""
        return await self.request("DELETE", url, **kwargs)

    async def options(self, url: str, **kwargs: Any) -> httpx2.Response:
        """OPTIONS ``url``."""
        return await self.request("OPTIONS", url, **kwargs)

    async def head(self, url: str, **kwargs: Any) -> httpx2.Response:
        """HEAD ``url``."""
        return await self.request("HEAD", url, **kwargs)

    # -- streams -----------------------------------------------------------------------------------

    def stream_client(
        self,
        *,
        token: str | None = None,
        token_via: TokenVia | None = None,
        url: str = "/",
        headers: dict[str, str] | None = None,
    ) -> Client:
        """A new ``surge.client.Client`` connected in-process (one WebSocket of its own).

        Use it with ``async with``; it is closed with this test client in any case.
        """
        transport = AsgiWebSocketTransport(
            self.app, url, token=token, token_via=token_via or self._token_via, headers=headers
        )
        client = Client(transport, backoff=TEST_BACKOFF)
        self._clients.append(client)
        return client

    def _shared(self) -> Client:
        if self._stream_client is None:
            self._stream_client = self.stream_client(token=self._token)
        return self._stream_client

    async def subscribe_group(
        self,
        stream: str,
        group: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> GroupSubscription:
        """Join a group on the shared connection; returns once synced (see ``surge.client``)."""
        return await self._shared().subscribe_group(stream, group, timeout=timeout)

    async def subscribe_item(
        self,
        stream: str,
        group: str,
        id: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> ItemSubscription:
        """Join an item on the shared connection; returns once synced."""
        return await self._shared().subscribe_item(stream, group, id, timeout=timeout)

    # -- background work ---------------------------------------------------------------------------

    async def emit(self, event: dict[str, Any] | None = None, /, **kwargs: Any) -> list[str]:
        """``app.emit``: send a message to the topic's event steps; returns the message ids."""
        return await self.app.emit(event, **kwargs)

    async def wait_idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until no event message is queued or running (TimeoutError otherwise)."""
        await self.app.wait_idle(timeout)


class _LoopThread:
    """An event loop on a daemon thread; ``call`` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="surge-testclient", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = CALL_TIMEOUT) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a TestClient method was called from one of its own callbacks")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the app did not answer within {timeout} s") from None

    def stop(self) -> None:
        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        try:
            self.call(cancel_rest(), timeout=10.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10.0)
            if not self._thread.is_alive():
                self.loop.close()


class _SyncSubscriptionBase:
    def __init__(self, portal: _LoopThread, sub: Subscription[Any]) -> None:
        self._portal = portal
        self.subscription = sub
        """The underlying ``surge.client`` subscription (lives on the client's loop)."""

    def __repr__(self) -> str:
        return f"<sync {self.subscription!r}>"

    @property
    def subscription_id(self) -> str:
        """The wire ``subscriptionId``."""
        return self.subscription.subscription_id

    def on_change(self, callback: Callable[[Change], object]) -> Callable[[], None]:
        """Call ``callback(change)`` (on the client's thread) after each change."""
        return self.subscription.on_change(callback)

    def on_event(self, type: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        """Call ``callback(data)`` (on the client's thread) for each ephemeral event ``type``."""
        return self.subscription.on_event(type, callback)

    def unsubscribe(self) -> None:
        """Leave the subscription."""
        self._portal.call(self.subscription.unsubscribe())


class SyncGroupSubscription(_SyncSubscriptionBase):
    """``TestClient.subscribe_group``'s result: ``state``, ``wait``, listeners."""

    subscription: GroupSubscription

    @property
    def state(self) -> list[dict[str, Any]]:
        """The group's items in creation order (a snapshot)."""
        return self.subscription.state

    def wait(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Block until ``predicate(state)`` holds; returns that state (TimeoutError otherwise)."""
        return self._portal.call(self.subscription.wait(predicate, timeout), timeout + 10)


class SyncItemSubscription(_SyncSubscriptionBase):
    """``TestClient.subscribe_item``'s result: ``state`` (the item or None), ``wait``."""

    subscription: ItemSubscription

    @property
    def state(self) -> dict[str, Any] | None:
        """The item, or None when it does not exist."""
        return self.subscription.state

    def wait(
        self, predicate: Callable[[dict[str, Any] | None], bool], timeout: float = 5.0
    ) -> dict[str, Any] | None:
        """Block until ``predicate(state)`` holds; returns that state (TimeoutError otherwise)."""
        return self._portal.call(self.subscription.wait(predicate, timeout), timeout + 10)


class SyncStream:
    """A stream's operations, blocking: ``client.streams.todo.set("inbox", "t1", {...})``."""

    def __init__(self, portal: _LoopThread, resolve: Callable[[], Stream]) -> None:
        self._portal = portal
        self._resolve = resolve

    def set(self, group_id: str, id: str, data: Any) -> Any:
        """``Stream.set``: create or replace; returns the stored value."""
        return self._portal.call(self._resolve().set(group_id, id, data))

    def get(self, group_id: str, id: str) -> Any:
        """``Stream.get``: the item or None."""
        return self._portal.call(self._resolve().get(group_id, id))

    def delete(self, group_id: str, id: str) -> Any:
        """``Stream.delete``: the deleted item or None."""
        return self._portal.call(self._resolve().delete(group_id, id))

    def get_group(
        self, group_id: str, *, limit: int | None = None, before: str | None = None
    ) -> GroupPage[Any]:
        """``Stream.get_group``: the items in creation order (windowed with ``limit``/``before``,
        ``.more`` naming the older page)."""
        return self._portal.call(self._resolve().get_group(group_id, limit=limit, before=before))

    def list_groups(self) -> list[str]:
        """``Stream.list_groups``."""
        return self._portal.call(self._resolve().list_groups())

    def send(self, channel: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        """``Stream.send``: an ephemeral event."""
        self._portal.call(self._resolve().send(channel, event))


class SyncStreams(Mapping[str, SyncStream]):
    """The app's streams with blocking methods: ``client.streams.todo`` / ``["todo"]``."""

    def __init__(self, portal: _LoopThread, resolve: Callable[[], Streams]) -> None:
        self._portal = portal
        self._resolve = resolve

    def __getitem__(self, name: str) -> SyncStream:
        self._resolve()[name]  # KeyError now, not at the first call
        return SyncStream(self._portal, lambda: self._resolve()[name])

    def __getattr__(self, name: str) -> SyncStream:
        if name.startswith("_"):
            raise AttributeError(name)
        getattr(self._resolve(), name)  # AttributeError naming the known streams
        return SyncStream(self._portal, lambda: self._resolve()[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolve())

    def __len__(self) -> int:
        return len(self._resolve())

    def reauthorize(self, where: AccessMatch = None) -> int:
        """``Streams.reauthorize``: re-check the matching connections' subscriptions."""
        return self._portal.call(self._resolve().reauthorize(where))

    def revoke(self, where: AccessMatch = None) -> int:
        """``Streams.revoke``: close the matching connections with 4003."""
        return self._portal.call(self._resolve().revoke(where))


class SyncStreamClient:
    """A stream connection of its own (``TestClient.connect``), e.g. with another token."""

    def __init__(self, portal: _LoopThread, client: Client) -> None:
        self._portal = portal
        self.client = client
        """The underlying ``surge.client.Client``."""

    def __enter__(self) -> SyncStreamClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def subscribe_group(
        self, stream: str, group: str, *, timeout: float = 5.0
    ) -> SyncGroupSubscription:
        """Join a group on this connection (raises ``SubscriptionError`` when refused)."""
        sub = self._portal.call(self.client.subscribe_group(stream, group, timeout=timeout))
        return SyncGroupSubscription(self._portal, sub)

    def subscribe_item(
        self, stream: str, group: str, id: str, *, timeout: float = 5.0
    ) -> SyncItemSubscription:
        """Join an item on this connection."""
        sub = self._portal.call(self.client.subscribe_item(stream, group, id, timeout=timeout))
        return SyncItemSubscription(self._portal, sub)

    def close(self) -> None:
        """Close this connection."""
        self._portal.call(self.client.close())


class TestClient:
    """The in-process test client, synchronous: ``with TestClient("examples/todo") as c:``.

    Same arguments as ``AsyncTestClient``. HTTP shortcuts return httpx2 ``Response`` objects;
    ``subscribe_group``/``subscribe_item`` return once the subscription is synced; ``streams``
    writes directly (blocking wrappers of the app's facade); ``wait_idle`` waits for event steps.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: str | Path | SurgeApp,
        *,
        store: StoreChoice = "memory",
        token: str | None = None,
        token_via: TokenVia = "subprotocol",
        raise_server_exceptions: bool = True,
        base_url: str = BASE_URL,
    ) -> None:
        self._options: dict[str, Any] = {
            "store": store,
            "token": token,
            "token_via": token_via,
            "raise_server_exceptions": raise_server_exceptions,
            "base_url": base_url,
        }
        self._source = app
        self._portal: _LoopThread | None = None
        self._client: AsyncTestClient | None = None

    def __enter__(self) -> TestClient:
        portal = _LoopThread()

        async def enter() -> AsyncTestClient:
            client = AsyncTestClient(self._source, **self._options)
            return await client.__aenter__()

        try:
            self._client = portal.call(enter())
        except BaseException:
            portal.stop()
            raise
        self._portal = portal
        return self

    def __exit__(self, *exc_info: object) -> None:
        portal, client = self._portal, self._client
        self._portal = self._client = None
        if portal is None or client is None:
            return
        try:
            portal.call(client.__aexit__(None, None, None))
        finally:
            portal.stop()

    def _parts(self) -> tuple[_LoopThread, AsyncTestClient]:
        if self._portal is None or self._client is None:
            raise RuntimeError("use the TestClient inside `with`")
        return self._portal, self._client

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = CALL_TIMEOUT) -> T:
        portal, _ = self._parts()
        return portal.call(coro, timeout)

    @property
    def app(self) -> SurgeApp:
        """The app under test."""
        return self._parts()[1].app

    @property
    def streams(self) -> SyncStreams:
        """The app's streams with blocking methods: ``client.streams.todo.set(g, id, data)``."""
        portal, client = self._parts()
        return SyncStreams(portal, lambda: client.streams)

    # -- HTTP --------------------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        """Send a request to the app (httpx2 keywords: ``json=``, ``params=``, ``headers=``)."""
        return self._call(self._parts()[1].request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx2.Response:
        """GET ``url``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx2.Response:
        """POST ``url``."""
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx2.Response:
        """PUT ``url``."""
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx2.Response:
        """PATCH ``url``."""
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx2.Response:
        """DELETE ``url``."""
        return self.request("DELETE", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx2.Response:
        """OPTIONS ``url``."""
        return self.request("OPTIONS", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> httpx2.Response:
        """HEAD ``url``."""
        return self.request("HEAD", url, **kwargs)

    # -- streams -----------------------------------------------------------------------------------

    def subscribe_group(
        self, stream: str, group: str, *, timeout: float = 5.0
    ) -> SyncGroupSubscription:
        """Join a group (shared connection); returns once synced.

        Raises:
            surge.client.SubscriptionError: the join was refused (e.g. ``STREAM_ACCESS_DENIED``).
        """
        portal, client = self._parts()
        sub = portal.call(client.subscribe_group(stream, group, timeout=timeout))
        return SyncGroupSubscription(portal, sub)

    def subscribe_item(
        self, stream: str, group: str, id: str, *, timeout: float = 5.0
    ) -> SyncItemSubscription:
        """Join an item (shared connection); returns once synced (``state``: item or None)."""
        portal, client = self._parts()
        sub = portal.call(client.subscribe_item(stream, group, id, timeout=timeout))
        return SyncItemSubscription(portal, sub)

    def connect(
        self,
        *,
        token: str | None = None,
        token_via: TokenVia | None = None,
        url: str = "/",
        headers: dict[str, str] | None = None,
    ) -> SyncStreamClient:
        """Open a stream connection of its own (another token, headers or path).

        Raises:
            surge.client.UpgradeRefused: ``authenticate`` (401) or the origin check (403)
                refused it.
        """
        portal, client = self._parts()
        stream_client = client.stream_client(
            token=token, token_via=token_via, url=url, headers=headers
        )

        async def open_it() -> None:
            stream_client.start()
            await stream_client.wait_open(timeout=10.0)

        portal.call(open_it())
        return SyncStreamClient(portal, stream_client)

    # -- background work ---------------------------------------------------------------------------

    def emit(self, event: dict[str, Any] | None = None, /, **kwargs: Any) -> list[str]:
        """``app.emit``: send a message to the topic's event steps; returns the message ids."""
        return self._call(self._parts()[1].emit(event, **kwargs))

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no event message is queued or running (TimeoutError otherwise)."""
        self._call(self._parts()[1].wait_idle(timeout), timeout + 10)
