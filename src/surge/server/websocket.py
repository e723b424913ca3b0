"""The WebSocket endpoint: performs the session's actions on a real connection.

Per connection, in one ``TaskGroup``: the reader (this coroutine; frames handled strictly in
order), the writer (``Outbox.run``, started only once needed: flow control, a drain, a close) and
one task per access check that has to wait (an async ``can_access``).

Under Surge's own protocol (``LeanWebSocketProtocol``, the default of ``surge start``/``dev``) the
connection is **detached** once accepted: the app's call returns, the protocol drops the
handshake's scope and calls the endpoint when a message waits; a reader task then handles what
waits, in order, and ends when nothing does. An idle connection so costs no task, no coroutine
chain (the app call, uvicorn's middleware, this handler, a ``TaskGroup``) and no request headers:
~4 KB of an 11 KB connection (bench/README.md). The writer and the async checks are the
protocol's tasks (uvicorn's shutdown waits for them; an exception in one drops the connection, as
in the ``TaskGroup``). Any other server, a mount under another app and the TestClient take the
``TaskGroup`` path; the rules below hold on both. The reader never waits for a
check, so a ``leave`` sent during a slow check is read at once and cancels it (the session's
``CancelCheck``); a synchronous ``can_access``, or none, is decided inline. A granted join
registers its pending hub subscription and reads its sync before the next frame is read
(``Syncer.sync``), so one client cannot run many snapshot reads at once beyond its pending checks;
a ``page`` request is read the same way (``Syncer.page``), so pages are answered in the order they
were asked. The hub only ever touches the outbox, so fan-out never waits for a socket.

Failure modes: a client's mistakes cost it an error event or a close, logged once per connection
at info (``CLIENT_MISTAKES`` budget); frames that arrive from a peer already gone (or after the
close was decided) are read and dropped without any work; when the connection ends, its pending
checks are cancelled and its subscriptions removed from the hub.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from starlette.types import Message, Receive, Scope, Send

from surge.log_context import CONNECTION_ID
from surge.protocol.codec import encode_error
from surge.protocol.codes import RATE_LIMITED, SYNC_TOO_LARGE, UNKNOWN_SUBSCRIPTION, CloseCode
from surge.protocol.messages import SubscriptionRequest
from surge.protocol.session import (
    Action,
    CancelCheck,
    CheckAccess,
    Close,
    SendError,
    SendPage,
    Session,
    Subscribe,
    Unsubscribe,
)
from surge.server.access_control import call_can_access
from surge.server.connection import Connection
from surge.server.logs import CLIENT_MISTAKES
from surge.server.outbox import Outbox
from surge.server.ratelimit import ConnectionLimiter, Verdict
from surge.server.stats import STATS
from surge.server.transport import (
    AsgiTransport,
    LeanDirectTransport,
    Transport,
    direct_transport,
)
from surge.server.upgrade import authorize_upgrade
from surge.server.ws_protocol import LeanWebSocketProtocol
from surge.steps.config import Subscription

if TYPE_CHECKING:
    from surge.server.runtime import Runtime

__all__ = ["Connection", "serve_websocket"]

logger = logging.getLogger(__name__)


async def serve_websocket(runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI handler for a WebSocket scope on any path."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    decision = await authorize_upgrade(runtime, scope)
    if decision.refusal is not None:
        await decision.refusal.send(scope, send)
        return
    subprotocols = scope.get("subprotocols") or []
    # Browsers and `ws` abort unless the 101 names exactly one offered value: the first.
    await send(
        {"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None}
    )
    protocol = getattr(send, "__self__", None)
    if isinstance(protocol, LeanWebSocketProtocol) and protocol.can_detach:
        _serve_detached(runtime, protocol, decision.auth_context)
        return
    task = asyncio.current_task()
    aborted = False

    def abort() -> None:
        # The ASGI path's way to drop a peer that does not take its close: end this task.
        nonlocal aborted
        aborted = True
        if task is not None:
            task.cancel()

    transport: Transport = direct_transport(send) or AsgiTransport(send, abort)
    conn = _open(runtime, transport, decision.auth_context)
    endpoint: _Endpoint | None = None
    connection_token = CONNECTION_ID.set(conn.id)  # on this connection's log lines
    try:
        async with asyncio.TaskGroup() as tasks:
            endpoint = _Endpoint(runtime, conn, tasks.create_task, _limiter(runtime))
            # The writer task exists only once flow control, a drain or a close needs it.
            conn.outbox.start_writer_with(endpoint.start_writer)
            runtime.access.attach(conn, endpoint.perform)  # expiry, reauthorize, revoke
            try:
                await endpoint.read(receive)
            finally:
                runtime.access.detach(conn)
                endpoint.end()
    except asyncio.CancelledError:
        if not aborted or task is None or task.uncancel() > 0:
            raise
    finally:
        _closed(runtime, conn, endpoint)
        CONNECTION_ID.reset(connection_token)


def _open(runtime: Runtime, transport: Transport, auth_context: Any) -> Connection:
    limits = runtime.config.limits
    conn = Connection(
        Session(
            max_subscriptions=limits.max_subscriptions,
            max_errors=limits.max_errors,
            max_frame_bytes=limits.max_frame_bytes,
        ),
        Outbox(
            limits.outbox_capacity,
            max_bytes=limits.max_outbound_bytes,
            close_timeout=limits.close_timeout,
            transport=transport,
            flusher=runtime.flusher,
            latest_value=runtime.latest_value_streams,
        ),
        auth_context,
    )
    runtime.connections.add(conn)
    STATS.connections_opened += 1
    return conn


def _limiter(runtime: Runtime) -> ConnectionLimiter | None:
    return ConnectionLimiter.for_limits(runtime.config.limits, time.monotonic())


def _closed(runtime: Runtime, conn: Connection, endpoint: _Endpoint | None) -> None:
    code = conn.outbox.close_code or (endpoint.peer_close_code if endpoint else None)
    STATS.closed_by_code[code or CloseCode.ABNORMAL] += 1
    conn.outbox.stop()
    runtime.connections.discard(conn)


def _serve_detached(runtime: Runtime, protocol: LeanWebSocketProtocol, auth_context: Any) -> None:
    """The lean path: the connection goes on without this ASGI call (module docstring)."""
    conn = _open(runtime, LeanDirectTransport(protocol), auth_context)
    endpoint = _DetachedEndpoint(runtime, conn, protocol, _limiter(runtime))
    conn.outbox.start_writer_with(endpoint.start_writer)
    runtime.access.attach(conn, endpoint.perform)
    protocol.detach(endpoint.wake)


async def _write(conn: Connection) -> None:
    try:
        await conn.outbox.run()
    except OSError:
        # The peer went away mid-write (uvicorn's ClientDisconnected is an OSError).
        conn.outbox.stop()


class _Endpoint:
    """Performs one connection's session actions."""

    __slots__ = ("_checks", "_spawn", "conn", "limiter", "peer_close_code", "runtime")

    def __init__(
        self,
        runtime: Runtime,
        conn: Connection,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        limiter: ConnectionLimiter | None = None,
    ) -> None:
        self.runtime = runtime
        self.conn = conn
        self._spawn = spawn  # runs a task of this connection (the writer, async checks)
        self.limiter = limiter
        # subscriptionId -> the task awaiting that join's async can_access (created when one
        # is: most connections never have one).
        self._checks: dict[str, asyncio.Task[None]] | None = None
        self.peer_close_code: int | None = None

    def start_writer(self) -> None:
        """Start the outbox's writer task (the outbox calls this once, when it needs one)."""
        self._spawn(_write(self.conn))

    async def read(self, receive: Receive) -> None:
        """Handle the messages of ``receive`` until the peer is gone."""
        while await self.handle(await receive()):
            pass

    async def handle(self, message: Message) -> bool:
        """Handle one ASGI message; False once it says the peer is gone."""
        kind = message["type"]
        if kind == "websocket.disconnect":
            self.peer_close_code = message.get("code")
            return False
        if kind != "websocket.receive":
            return True
        if self.conn.is_gone:
            # Frames a client sent before it went away (or before we closed) are not worth
            # any work: a reset after 256 joins must not cost 256 snapshot reads.
            return True
        session = self.conn.session
        text = message.get("text")
        if text is not None:
            limiter = self.limiter
            if limiter is not None:
                verdict = limiter.frame(text, time.monotonic())
                if verdict is not Verdict.OK:
                    await self._rate_limited(verdict, None)
                    return True  # dropped unparsed: a flood costs no decoding
            actions = session.receive_text(text)
        else:
            actions = session.receive_binary()
        if actions:
            await self.perform(actions)
        return True

    def end(self) -> None:
        """The connection is over: cancel pending checks, remove its subscriptions."""
        checks = self._checks
        if checks:
            for check in checks.values():
                check.cancel()
            checks.clear()
        session = self.conn.session
        self.runtime.hub.unsubscribe_connection(self.conn, list(session.subscriptions.values()))
        if not session.closed:
            self.conn.outbox.stop()

    async def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, CheckAccess):
                limiter = self.limiter
                if limiter is not None:
                    verdict = limiter.join(time.monotonic())
                    if verdict is not Verdict.OK:
                        await self._rate_limited(verdict, action.request)
                        continue
                await self._check_access(action.request)
            elif isinstance(action, CancelCheck):
                checks = self._checks
                check = checks.pop(action.request.subscription_id, None) if checks else None
                if check is not None:
                    check.cancel()
            elif isinstance(action, Subscribe):
                await self._subscribe(action.request)
            elif isinstance(action, Unsubscribe):
                sub = self.runtime.hub.find(self.conn, action.request)
                if sub is not None:
                    self.runtime.hub.unsubscribe(sub)
            elif isinstance(action, SendPage):
                await self._page(action)
            elif isinstance(action, SendError):
                self.send_error(action.code, action.message, action.request)
            elif isinstance(action, Close):
                if CLIENT_MISTAKES.allow():
                    logger.info(
                        "connection %s closed by server: %s %s",
                        self.conn.id,
                        int(action.code),
                        action.reason,
                    )
                self.conn.outbox.close(action.code, action.reason)

    async def _rate_limited(self, verdict: Verdict, join: SubscriptionRequest | None) -> None:
        """A frame (or, with ``join``, a join) went over a rate limit; it is dropped."""
        limiter = self.limiter
        assert limiter is not None  # only called with a limiter's verdict
        STATS.rate_limited[limiter.kind] += 1
        session = self.conn.session
        message = f"{limiter.what}: dropped, slow down"
        if join is not None:
            # Every refused join is answered, so a client never waits for a sync forever.
            await self.perform(session.access_denied(join, message, RATE_LIMITED))
        elif verdict is Verdict.WARN:
            self.send_error(RATE_LIMITED, message, None)
        if verdict is Verdict.CLOSE:
            await self.perform(session.close(CloseCode.RATE_LIMITED, "rate limit exceeded"))

    async def _check_access(self, request: SubscriptionRequest) -> None:
        stream = self.runtime.registry.streams.get(request.stream)
        if stream is None:
            await self._answer(request, False, f"unknown stream {request.stream!r}")
            return
        rule = stream.can_access
        if rule is None:
            await self._answer(request, True, "")
            return
        try:
            verdict = rule(
                Subscription(groupId=request.group, id=request.id), self.conn.auth_context
            )
        except Exception:
            logger.exception("can_access of stream %r raised; join denied", request.stream)
            await self._answer(request, False, "access denied")
            return
        if not inspect.isawaitable(verdict):
            await self._answer(request, bool(verdict), "" if verdict else "access denied")
            return
        # An async check runs beside the reader: later frames (a leave) are read meanwhile.
        checks = self._checks
        if checks is None:
            checks = self._checks = {}
        previous = checks.pop(request.subscription_id, None)
        if previous is not None:
            previous.cancel()
        checks[request.subscription_id] = self._spawn(
            self._await_check(request, verdict, rule, self.runtime.access.generation(self.conn))
        )

    async def _await_check(
        self,
        request: SubscriptionRequest,
        verdict: Awaitable[Any],
        rule: Callable[..., Any],
        generation: int,
    ) -> None:
        try:
            async with asyncio.timeout(self.runtime.config.limits.access_check_timeout):
                allowed = bool(await verdict)
            reason = "" if allowed else "access denied"
        except TimeoutError:
            logger.warning("can_access of stream %r timed out; join denied", request.stream)
            allowed, reason = False, "access check timed out"
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("can_access of stream %r raised; join denied", request.stream)
            allowed, reason = False, "access denied"
        access, conn = self.runtime.access, self.conn
        while allowed and access.generation(conn) != generation:
            # streams.reauthorize ran meanwhile: this check may have read what it changed.
            generation = access.generation(conn)
            timeout = self.runtime.config.limits.access_check_timeout
            allowed = await call_can_access(rule, request, conn.auth_context, timeout)
            reason = "" if allowed else "access denied"
        checks = self._checks
        if checks is not None and checks.get(request.subscription_id) is asyncio.current_task():
            del checks[request.subscription_id]
        await self._answer(request, allowed, reason)

    async def _answer(self, request: SubscriptionRequest, allowed: bool, reason: str) -> None:
        session = self.conn.session
        follow = (
            session.access_granted(request) if allowed else session.access_denied(request, reason)
        )
        await self.perform(follow)

    async def _subscribe(self, request: SubscriptionRequest) -> None:
        runtime = self.runtime
        sub = runtime.hub.subscribe(self.conn, request)
        problem = await runtime.syncer.sync(sub)
        if problem is None:
            return
        runtime.hub.unsubscribe(sub)
        self.conn.session.forget(request)
        if problem == SYNC_TOO_LARGE:
            message = (
                f"the sync of {request.key} is larger than this connection may queue "
                f"({self.conn.max_sync_bytes} bytes)"
            )
        else:
            message = "storage unavailable, retry later"
        self.send_error(problem, message, request)

    async def _page(self, action: SendPage) -> None:
        """Answer a ``page`` request of a held subscription (read before the next frame)."""
        sub = self.runtime.hub.find(self.conn, action.request)
        if sub is None:  # recorded by the session but its sync failed meanwhile
            self.send_error(UNKNOWN_SUBSCRIPTION, "subscription is gone", action.request)
            return
        problem = await self.runtime.syncer.page(sub, action.before, action.limit)
        if problem is not None:
            self.send_error(*problem, action.request)

    def send_error(self, code: str, message: str, request: SubscriptionRequest | None) -> None:
        conn = self.conn
        ts = self.runtime.hub.clock.next()
        if request is None:
            frame = encode_error(code, message, ts)
        else:
            frame = encode_error(
                code, message, ts, stream=request.stream, group=request.group, id=request.id
            )
        level = (
            logging.INFO if conn.errors_logged == 0 and CLIENT_MISTAKES.allow() else logging.DEBUG
        )
        conn.errors_logged += 1
        logger.log(level, "connection %s: %s: %s", conn.id, code, message)
        conn.send(frame)


class _DetachedEndpoint(_Endpoint):
    """The endpoint of a detached ``LeanWebSocketProtocol`` connection: no task while idle.

    The protocol calls ``wake`` when a message waits; a reader task then handles what waits,
    in order, and ends when nothing does (the protocol parses one message ahead at most, as
    for ``receive``). The disconnect ends the connection as the end of ``serve_websocket``'s
    call does. The writer and the async checks are the protocol's tasks (``spawn``).
    """

    __slots__ = ("_is_over", "_protocol", "_reader")

    def __init__(
        self,
        runtime: Runtime,
        conn: Connection,
        protocol: LeanWebSocketProtocol,
        limiter: ConnectionLimiter | None,
    ) -> None:
        super().__init__(runtime, conn, protocol.spawn, limiter)
        self._protocol = protocol
        self._reader: asyncio.Task[None] | None = None
        self._is_over = False

    def wake(self) -> None:
        """A message waits: read it (and what follows) unless a reader runs already."""
        if self._reader is None and not self._is_over:
            self._reader = self._protocol.spawn(self._read_waiting())

    async def _read_waiting(self) -> None:
        conn = self.conn
        CONNECTION_ID.set(conn.id)  # this task's own context: on its log lines
        take = self._protocol.take
        try:
            while True:
                message = take()
                if message is None:
                    return  # idle again: no task until the next message
                if not await self.handle(message):
                    self._over()
                    return
        except BaseException:
            # Like an exception out of the app's call: the connection ends (spawn logs it).
            self._over()
            raise
        finally:
            self._reader = None

    def _over(self) -> None:
        if self._is_over:
            return
        self._is_over = True
        runtime = self.runtime
        runtime.access.detach(self.conn)
        self.end()
        _closed(runtime, self.conn, self)
