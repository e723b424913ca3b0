"""The protocol client: one connection at a time, reconnecting forever, re-joining everything.

Life of a client: ``connecting`` -> ``open`` (every subscription is (re-)joined with its own
``subscriptionId``; each fresh sync replaces that subscription's state) -> on any loss
``reconnecting`` (jittered exponential backoff, ``Backoff``) -> ``open`` ... -> ``closed`` (after
``close()``, or when the server refuses the upgrade with 401 or 403 or closes with 4003 (access
revoked) and ``retry_refused`` is off; any other HTTP answer to the upgrade, a 429 over the
per-address connect limit or a 503 at the connection cap, is retried, no sooner than its
``Retry-After``). After a 4029 close (rate limited) the backoff is not reset
even if the connection was long-lived, so a client that keeps being limited waits longer each
time (docs/protocol.md section 7). Frames are routed by their envelope, as the official clients
do: one frame may serve several subscriptions of this connection.

Deltas (protocol.md section 4): every join asks for them (``deltas=False`` turns that off), so
updates made by ``update(ops)`` arrive as their ops and are applied to the held items
(``surge.client.state``). Pages (section 5): ``GroupSubscription.load_older`` sends a ``page``
request; the server answers the requests of a connection in order, so the answers (``page``
frames, or ``UNKNOWN_SUBSCRIPTION``/other errors) are matched first-in first-out per group.

Resume (docs/protocol.md section 3): a re-join carries ``"since"`` (the subscription's last
offset and epoch) and is answered, when the server still has the history, by a ``resume`` frame
and the missed changes and events instead of a sync: the subscription keeps its state and
listeners and sees exactly what it missed, ``send`` events included, once. ``sub.recovered``
tells how the last re-join went (False: a full sync, events in the gap lost). While a
subscription waits for its join's answer it ignores the connection's other frames: the answer
(sync or replay) covers them, and the server re-sends what comes later.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast

from surge.client.backoff import Backoff
from surge.client.errors import (
    AccessRevoked,
    ClientClosed,
    ClientError,
    SubscriptionError,
    TransportClosed,
    UpgradeRefused,
)
from surge.client.frames import (
    ServerFrame,
    decode_server_frame,
    encode_join,
    encode_leave,
    encode_page,
)
from surge.client.subscription import GroupSubscription, ItemSubscription, Subscription
from surge.client.transport import (
    TokenProvider,
    TokenVia,
    Transport,
    TransportConnection,
    WebSocketTransport,
)
from surge.errors import ProtocolError, ValidationError
from surge.protocol.codes import ACCESS_DENIED, UNKNOWN_SUBSCRIPTION, CloseCode
from surge.protocol.ids import id_problem
from surge.protocol.messages import SubscriptionKey, SubscriptionRequest

__all__ = ["Client", "ConnectionState", "connect"]

logger = logging.getLogger(__name__)

SubT = TypeVar("SubT", bound=Subscription[Any])
_PageWait = tuple[GroupSubscription, "asyncio.Future[list[dict[str, Any]]]"]
DEFAULT_SUBSCRIBE_TIMEOUT = 10.0


_PASSING = frozenset({408, 425, 429})  # 4xx answers that say "later", not "wrong"


class ConnectionState(enum.StrEnum):
    """Where the client's connection is."""

    CONNECTING = "connecting"
    """Before the first successful connection (retrying with backoff)."""
    OPEN = "open"
    RECONNECTING = "reconnecting"
    """The connection was lost; waiting for the next attempt or attempting."""
    CLOSED = "closed"
    """``close()`` was called, or the upgrade was refused for good."""


class Client:
    """A stream-protocol client over a ``Transport``; use ``connect(url)`` for WebSockets.

    Use it as ``async with``; or call ``start()`` and ``await close()``.

    Args:
        transport: opens connections (``WebSocketTransport``, or the in-process ASGI one).
        backoff: reconnect delays.
        on_state_change: called with each new ``ConnectionState``.
        retry_refused: keep retrying after a 401 or 403 answer to the upgrade or a 4003 close
            (access revoked: useful with a token function that fetches new credentials); by
            default the client closes and pending and later subscribes raise ``UpgradeRefused``
            or ``AccessRevoked``.
        deltas: ask the server for deltas (``patch`` frames) on every subscription.
        resume: re-join from each subscription's last offset (a server without the extension
            ignores it and sends a sync, as always).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        backoff: Backoff | None = None,
        on_state_change: Callable[[ConnectionState], object] | None = None,
        retry_refused: bool = False,
        deltas: bool = True,
        resume: bool = True,
    ) -> None:
        self._transport = transport
        self._deltas = deltas
        self._resume = resume
        self.backoff = backoff or Backoff()
        self._state_callbacks: list[Callable[[ConnectionState], object]] = []
        if on_state_change is not None:
            self._state_callbacks.append(on_state_change)
        self._retry_refused = retry_refused
        self.state = ConnectionState.CONNECTING
        self.last_error: BaseException | None = None
        """Why the last connection attempt failed or the last connection ended."""
        self.connections = 0
        """How many connections were opened so far (1 + reconnects)."""
        self._subs: dict[str, Subscription[Any]] = {}
        self._pending: dict[SubscriptionKey, deque[Subscription[Any]]] = {}
        # Page requests awaiting their answer on the current connection, in the order sent.
        self._pages: dict[SubscriptionKey, deque[_PageWait]] = {}
        self._conn: TransportConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._refused: UpgradeRefused | AccessRevoked | None = None
        self._state_changed = asyncio.Event()

    async def __aenter__(self) -> Client:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connection state -----------------------------------------------------------------------

    def on_state_change(self, callback: Callable[[ConnectionState], object]) -> Callable[[], None]:
        """Call ``callback(state)`` on every state change; returns a function removing it."""
        self._state_callbacks.append(callback)

        def remove() -> None:
            if callback in self._state_callbacks:
                self._state_callbacks.remove(callback)

        return remove

    def _set_state(self, state: ConnectionState) -> None:
        if state is self.state:
            return
        self.state = state
        self._state_changed.set()
        self._state_changed = asyncio.Event()
        for callback in list(self._state_callbacks):
            try:
                callback(state)
            except Exception:
                logger.exception("a connection-state callback raised")

    async def wait_state(self, state: ConnectionState, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the client is in ``state``; raises TimeoutError, or the refusal when the
        client closed because the upgrade was refused."""
        async with asyncio.timeout(timeout):
            while self.state is not state:
                if self.state is ConnectionState.CLOSED:
                    raise self._refused or ClientClosed("the client is closed")
                await self._state_changed.wait()

    async def wait_open(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until a connection is open."""
        await self.wait_state(ConnectionState.OPEN, timeout)

    @property
    def subscriptions(self) -> list[Subscription[Any]]:
        """The live subscriptions, in the order they were made."""
        return list(self._subs.values())

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background (idempotent)."""
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="surge-client")

    async def close(self) -> None:
        """Close the connection and end every subscription; idempotent."""
        self._closing = True
        task, self._task = self._task, None
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self._subs.values()):
            sub._end(None)
        self._subs.clear()
        self._pending.clear()
        self._fail_pages(ClientClosed("the client is closed"))
        self._set_state(ConnectionState.CLOSED)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while not self._closing:
            wait_at_least: float | None = None
            try:
                conn = await self._transport.connect()
            except asyncio.CancelledError:
                raise
            except UpgradeRefused as exc:
                self.last_error = exc
                if exc.is_refusal and not self._retry_refused:
                    logger.warning("stream client: %s; not retrying", exc)
                    self._refuse(exc)
                    return
                if exc.status in _PASSING or exc.status >= 500 or exc.is_refusal:
                    logger.info("stream client: %s; retrying", exc)
                else:  # a 404 or 400 (a wrong URL, a proxy in the way) rarely passes: say so
                    logger.warning("stream client: %s; retrying, check the URL", exc)
                wait_at_least = exc.retry_after
            except Exception as exc:
                # Anything a transport may raise while the server is away is worth a retry.
                self.last_error = exc
                logger.debug("stream client: connection attempt failed: %r", exc)
            else:
                opened = loop.time()
                await self._serve(conn)
                ended = self.last_error
                closed = ended if isinstance(ended, TransportClosed) else None
                code = closed.code if closed is not None else None
                revoked = closed is not None and code == CloseCode.ACCESS_REVOKED
                if revoked and closed is not None and not self._retry_refused and not self._closing:
                    refusal = AccessRevoked(closed.code, closed.reason)
                    logger.warning("stream client: %s; not reconnecting", refusal)
                    self._refuse(refusal)
                    return
                rate_limited = code == CloseCode.RATE_LIMITED
                if not rate_limited and loop.time() - opened >= self.backoff.stable_after:
                    attempt = 0
            if self._closing:
                return
            if self.connections:
                self._set_state(ConnectionState.RECONNECTING)
            delay = self.backoff.delay(attempt)
            if wait_at_least is not None:
                # The server said when (a 429's or 503's Retry-After, within the backoff's cap):
                # no sooner, and spread above it as the backoff's jitter spreads below its base,
                # so the clients refused in one second do not all come back in the next.
                floor = min(wait_at_least, self.backoff.max_delay)
                delay = max(delay, floor * (1 + self.backoff.jitter * random.random()))
            attempt += 1
            await asyncio.sleep(delay)

    def _refuse(self, exc: UpgradeRefused | AccessRevoked) -> None:
        self._refused = exc
        for sub in list(self._subs.values()):
            sub._end(exc)
        self._subs.clear()
        self._pending.clear()
        self._closing = True
        self._set_state(ConnectionState.CLOSED)

    async def _serve(self, conn: TransportConnection) -> None:
        self.connections += 1
        self._conn = conn
        self._pending = {}
        for sub in self._subs.values():
            sub._new_connection()
        self._set_state(ConnectionState.OPEN)
        try:
            for sub in list(self._subs.values()):
                await self._join(sub, conn)
            while True:
                self._dispatch(await conn.recv())
        except TransportClosed as exc:
            self.last_error = exc
            if not self._closing:
                logger.info("stream client: %s; reconnecting", exc)
        except OSError as exc:
            self.last_error = exc
            logger.info("stream client: connection failed: %r; reconnecting", exc)
        finally:
            self._conn = None
            self._fail_pages(ClientError("the connection was lost before the page arrived"))
            for sub in self._subs.values():
                sub.is_synced = False
            with contextlib.suppress(Exception):
                await conn.close()

    async def _join(self, sub: Subscription[Any], conn: TransportConnection) -> None:
        if sub.joined_on is conn or sub.is_closed:
            return
        sub.joined_on = conn
        self._pending.setdefault(sub.request.key, deque()).append(sub)
        # A failed send: the reader sees the loss too, and the next connection re-joins.
        with contextlib.suppress(TransportClosed, OSError):
            await conn.send(encode_join(sub.request, sub.since if self._resume else None))

    # -- frames ---------------------------------------------------------------------------------

    def _dispatch(self, text: str) -> None:
        try:
            frame = decode_server_frame(text)
        except ProtocolError as exc:
            logger.warning("stream client: ignored a frame: %s", exc)
            return
        stream, group = frame.stream, frame.group
        if stream is None or group is None:
            error = frame.error
            if error is not None:
                logger.warning("stream client: server error %s: %s", *error)
            return
        group_key: SubscriptionKey = (stream, group)
        exact: SubscriptionKey = group_key if frame.id is None else (stream, group, frame.id)
        error = frame.error
        if error is not None:
            self._answer_error(exact, frame, SubscriptionError(*error))
            return
        if frame.kind == "sync":
            self._answer_sync(exact, frame)
            return
        if frame.kind == "resume":
            pending = self._pending.get(exact)
            if pending:
                pending.popleft()._resumed(frame)
            for replayed in frame.replay:  # a batched resume: its missed messages, in order
                self._deliver(replayed)
            return
        if frame.kind == "page":
            self._answer_page(group_key, frame)
            return
        self._deliver(frame)

    def _deliver(self, frame: ServerFrame) -> None:
        """A change or event: to every synced subscription of its group, and of its item."""
        stream, group = cast(str, frame.stream), cast(str, frame.group)
        group_key: SubscriptionKey = (stream, group)
        for sub in self._matching(group_key):
            if sub.is_synced:
                sub._handle(frame)
        if frame.id is not None:
            exact: SubscriptionKey = (stream, group, frame.id)
            for sub in self._matching(exact):
                if sub.is_synced:
                    sub._handle(frame)

    def _matching(self, key: SubscriptionKey) -> list[Subscription[Any]]:
        return [sub for sub in self._subs.values() if sub.request.key == key]

    def _answer_sync(self, key: SubscriptionKey, frame: ServerFrame) -> None:
        # Joins of one key are answered in order: the first pending one is answered now; the
        # live ones apply the (newer) state too; later pending ones wait for their own answer.
        pending = self._pending.get(key)
        first = pending.popleft() if pending else None
        for sub in self._matching(key):
            if sub is first or sub.is_synced:
                sub._handle(frame)

    def _answer_page(self, key: SubscriptionKey, frame: ServerFrame) -> None:
        # The oldest request of this group is answered; its subscription applies the page.
        waiting = self._pages.get(key)
        if not waiting:
            return
        sub, future = waiting.popleft()
        items = frame.data if isinstance(frame.data, list) else []
        if not sub.is_closed:
            sub._handle(frame)
        if not future.done():
            future.set_result(items)

    def _fail_pages(self, error: ClientError) -> None:
        pages, self._pages = self._pages, {}
        for waiting in pages.values():
            for _, future in waiting:
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # retrieved: its waiter may have timed out already

    def _answer_error(
        self, key: SubscriptionKey, frame: ServerFrame, error: SubscriptionError
    ) -> None:
        pages = self._pages.get(key)
        if pages and (error.code == UNKNOWN_SUBSCRIPTION or not self._pending.get(key)):
            _, future = pages.popleft()
            if not future.done():
                future.set_exception(error)
                future.exception()
            return
        pending = self._pending.get(key)
        if not pending:
            if error.code == ACCESS_DENIED:
                # The server took back a live subscription (``streams.reauthorize``): one error
                # per subscription it removed, so this one ends here with that error.
                live = next((sub for sub in self._matching(key) if sub.is_synced), None)
                if live is not None:
                    logger.info("stream client: %s revoked by the server: %s", live, error)
                    self._subs.pop(live.subscription_id, None)
                    live._end(error)
                    return
            # Not an answer to a join: an ephemeral event that happens to be called "error".
            for sub in self._matching(key):
                sub._handle(frame)
            return
        sub = pending.popleft()
        logger.info("stream client: join of %s refused: %s", sub, error)
        self._subs.pop(sub.subscription_id, None)
        sub._end(error)

    # -- subscriptions ----------------------------------------------------------------------------

    async def subscribe_group(
        self,
        stream: str,
        group: str,
        *,
        timeout: float = DEFAULT_SUBSCRIBE_TIMEOUT,  # noqa: ASYNC109
    ) -> GroupSubscription:
        """Join (stream, group) and return once its sync arrived (``sub.state`` is current).

        Raises:
            SubscriptionError: the server refused the join (its ``code``).
            UpgradeRefused: the server refused the connection.
            AccessRevoked: the server closed the connection with 4003 (access revoked).
            TimeoutError: no answer within ``timeout`` (the server is away, say).
        """
        request = self._request(stream, group, None)
        return await self._subscribe(GroupSubscription(self, request), timeout)

    async def subscribe_item(
        self,
        stream: str,
        group: str,
        id: str,
        *,
        timeout: float = DEFAULT_SUBSCRIBE_TIMEOUT,  # noqa: ASYNC109
    ) -> ItemSubscription:
        """Join one item and return once its sync arrived (``sub.state``: the item or None).

        Raises: as ``subscribe_group``.
        """
        request = self._request(stream, group, id)
        return await self._subscribe(ItemSubscription(self, request), timeout)

    def _request(self, stream: str, group: str, id: str | None) -> SubscriptionRequest:
        for value, what in ((stream, "streamName"), (group, "groupId"), (id, "id")):
            if value is None and what == "id":
                continue
            problem = id_problem(value, what)
            if problem is not None:
                detail = {"loc": [what], "msg": problem, "type": "value_error"}
                raise ValidationError(problem, [detail])
        return SubscriptionRequest(stream, group, id, uuid.uuid4().hex, deltas=self._deltas)

    async def _subscribe(self, sub: SubT, timeout: float) -> SubT:  # noqa: ASYNC109
        if self._refused is not None:
            raise self._refused
        if self._closing:
            raise ClientClosed("the client is closed")
        self.start()
        self._subs[sub.subscription_id] = sub
        conn = self._conn
        if conn is not None and self.state is ConnectionState.OPEN:
            await self._join(sub, conn)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(sub._first_sync)
        except TimeoutError:
            await self._unsubscribe(sub)
            raise TimeoutError(
                f"no sync for {sub} within {timeout} s (connection {self.state.value}; "
                f"last error: {self.last_error!r})"
            ) from None
        except ClientError:
            self._subs.pop(sub.subscription_id, None)
            raise
        return sub

    async def _load_page(
        self,
        sub: GroupSubscription,
        limit: int | None,
        timeout: float,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        """Send a page request for ``sub`` and wait for its answer (``load_older``)."""
        conn = self._conn
        if sub.is_closed:
            raise sub.error or ClientClosed(f"{sub} is closed")
        if conn is None or not sub.is_synced or sub.joined_on is not conn:
            raise ClientError(f"{sub} is not synced on a live connection; retry once it is")
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        entry = (sub, future)
        waiting = self._pages.setdefault(sub.request.key, deque())
        waiting.append(entry)
        try:
            await conn.send(encode_page(sub.request, sub.more, limit))
        except (TransportClosed, OSError) as exc:
            if entry in waiting:
                waiting.remove(entry)
            raise ClientError(f"the page request of {sub} could not be sent: {exc}") from exc
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            raise TimeoutError(f"no page for {sub} within {timeout} s") from None

    async def _unsubscribe(self, sub: Subscription[Any]) -> None:
        if self._subs.pop(sub.subscription_id, None) is None:
            sub._end(None)
            return
        pending = self._pending.get(sub.request.key)
        if pending is not None and sub in pending:
            pending.remove(sub)
        conn = self._conn
        was_joined = sub.joined_on is conn and conn is not None
        sub._end(None)
        if was_joined and conn is not None:
            with contextlib.suppress(TransportClosed, OSError):
                await conn.send(encode_leave(sub.request))


def connect(
    url: str,
    *,
    token: str | TokenProvider | None = None,
    token_via: TokenVia = "subprotocol",
    backoff: Backoff | None = None,
    on_state_change: Callable[[ConnectionState], object] | None = None,
    open_timeout: float = 10.0,
    retry_refused: bool = False,
    deltas: bool = True,
    resume: bool = True,
) -> Client:
    """A client of the stream server at ``url`` (``ws://host:3000/``), for ``async with``.

    ``token`` is sent as the ``Authorization,<token>`` subprotocol pair (``token_via=
    "subprotocol"``, what the Node client does) or as ``?authToken=<token>`` (``"query"``). It
    may be a function (sync or async) returning the token: it is called before every connection
    attempt, so the reconnect after a 4001 close (the token expired) uses a fresh token. After a
    4003 close (``streams.revoke``) the client stops, as after a refused upgrade, unless
    ``retry_refused``.

    Example::

        async with surge.client.connect("ws://localhost:3000/") as client:
            inbox = await client.subscribe_group("todo", "inbox")
            print(inbox.state)
            async for change in inbox.changes():
                print(change.kind, change.item)
    """
    transport = WebSocketTransport(url, token=token, token_via=token_via, open_timeout=open_timeout)
    return Client(
        transport,
        backoff=backoff,
        on_state_change=on_state_change,
        retry_refused=retry_refused,
        deltas=deltas,
        resume=resume,
    )
