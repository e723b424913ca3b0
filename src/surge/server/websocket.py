"""The WebSocket endpoint: performs the session's actions on a real connection.

Per connection: one reader (this coroutine, frames handled strictly in order, each join fully
answered before the next frame is read) and one writer (``Outbox.run``) in a ``TaskGroup``. The
hub only ever touches the outbox, so fan-out never waits for a socket.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from typing import TYPE_CHECKING, Any

from surge.errors import StoreError
from surge.protocol.codec import (
    STORE_UNAVAILABLE,
    SYNC_TOO_LARGE,
    Frame,
    encode_error,
    encode_group_sync,
    encode_item_sync,
)
from surge.protocol.messages import SubscriptionRequest
from surge.protocol.session import (
    Action,
    CheckAccess,
    Close,
    SendError,
    Session,
    Subscribe,
    Unsubscribe,
)
from surge.server.hub import HubSubscription
from surge.server.logs import CLIENT_MISTAKES
from surge.server.outbox import Outbox
from surge.server.sync_cache import CachedSync
from surge.server.transport import DirectTransport
from surge.server.upgrade import authorize_upgrade
from surge.steps.config import Subscription
from surge.streams.feed import GroupSnapshot

if TYPE_CHECKING:
    from surge.server.runtime import Runtime

__all__ = ["Connection", "serve_websocket", "sync_subscription"]

logger = logging.getLogger(__name__)
_ids = itertools.count(1)


class Connection:
    """One accepted WebSocket: its outbox, protocol session, auth context and subscriptions."""

    __slots__ = ("auth_context", "errors_logged", "id", "outbox", "session", "subs")

    def __init__(self, session: Session, outbox: Outbox, auth_context: Any) -> None:
        self.id = next(_ids)
        self.session = session
        self.outbox = outbox
        self.auth_context = auth_context
        self.subs: dict[str, HubSubscription] = {}
        # Client mistakes are logged once per connection at info, the rest at debug.
        self.errors_logged = 0

    def send(self, frame: Frame) -> None:
        """Queue a frame (the hub's only way to reach the socket)."""
        self.outbox.put(frame)

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"


async def serve_websocket(runtime: Runtime, scope: dict[str, Any], receive: Any, send: Any) -> None:
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
    limits = runtime.config.limits
    task = asyncio.current_task()
    aborted = False

    def abort() -> None:
        # The ASGI path's way to drop a peer that does not take its close: end this task.
        nonlocal aborted
        aborted = True
        if task is not None:
            task.cancel()

    direct = DirectTransport.from_asgi_send(send)
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
            direct=direct,
            flusher=runtime.flusher,
            abort=None if direct is not None else abort,
        ),
        decision.auth_context,
    )
    runtime.connections.add(conn)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_write(conn, send))
            try:
                await _read(runtime, conn, receive)
            finally:
                for sub in conn.subs.values():
                    runtime.hub.unsubscribe(sub)
                conn.subs.clear()
                if not conn.session.closed:
                    conn.outbox.stop()
    except asyncio.CancelledError:
        if not aborted or task is None or task.uncancel() > 0:
            raise
    finally:
        conn.outbox.stop()
        runtime.connections.discard(conn)


async def _write(conn: Connection, send: Any) -> None:
    try:
        await conn.outbox.run(send)
    except OSError:
        # The peer went away mid-write (uvicorn's ClientDisconnected is an OSError).
        conn.outbox.stop()


async def _read(runtime: Runtime, conn: Connection, receive: Any) -> None:
    session = conn.session
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.disconnect":
            return
        if kind != "websocket.receive":
            continue
        if conn.outbox.is_gone:
            # Frames a client sent before it went away (or before we closed) are not worth any
            # work: a reset after 256 joins must not cost 256 snapshot reads.
            continue
        text = message.get("text")
        actions = session.receive_text(text) if text is not None else session.receive_binary()
        if actions:
            await _perform(runtime, conn, actions)
        if session.closed:
            # Keep reading until the peer answers our close, so the handshake completes.
            while (await receive())["type"] != "websocket.disconnect":
                pass
            return


async def _perform(runtime: Runtime, conn: Connection, actions: list[Action]) -> None:
    for action in actions:
        if isinstance(action, CheckAccess):
            allowed, reason = await _check_access(runtime, conn, action.request)
            session = conn.session
            follow = (
                session.access_granted(action.request)
                if allowed
                else session.access_denied(action.request, reason)
            )
            await _perform(runtime, conn, follow)
        elif isinstance(action, Subscribe):
            await _subscribe(runtime, conn, action.request)
        elif isinstance(action, Unsubscribe):
            sub = conn.subs.pop(action.request.subscription_id, None)
            if sub is not None:
                runtime.hub.unsubscribe(sub)
        elif isinstance(action, SendError):
            _send_error(runtime, conn, action.code, action.message, action.request)
        elif isinstance(action, Close):
            if CLIENT_MISTAKES.allow():
                logger.info(
                    "connection %s closed by server: %s %s", conn.id, action.code, action.reason
                )
            conn.outbox.close(action.code, action.reason)


def _send_error(
    runtime: Runtime, conn: Connection, code: str, message: str, request: SubscriptionRequest | None
) -> None:
    if request is None:
        frame = encode_error(code, message, runtime.hub.clock.next())
    else:
        frame = encode_error(
            code,
            message,
            runtime.hub.clock.next(),
            stream=request.stream,
            group=request.group,
            id=request.id,
        )
    level = logging.INFO if conn.errors_logged == 0 and CLIENT_MISTAKES.allow() else logging.DEBUG
    conn.errors_logged += 1
    logger.log(level, "connection %s: %s: %s", conn.id, code, message)
    conn.send(frame)


async def _check_access(
    runtime: Runtime, conn: Connection, request: SubscriptionRequest
) -> tuple[bool, str]:
    stream = runtime.registry.streams.get(request.stream)
    if stream is None:
        return False, f"unknown stream {request.stream!r}"
    rule = stream.can_access
    if rule is None:
        return True, ""
    try:
        async with asyncio.timeout(runtime.config.limits.access_check_timeout):
            verdict = rule(Subscription(groupId=request.group, id=request.id), conn.auth_context)
            if inspect.isawaitable(verdict):
                verdict = await verdict
    except TimeoutError:
        logger.warning("can_access of stream %r timed out; join denied", request.stream)
        return False, "access check timed out"
    except Exception:
        logger.exception("can_access of stream %r raised; join denied", request.stream)
        return False, "access denied"
    if verdict:
        return True, ""
    return False, "access denied"


async def _subscribe(runtime: Runtime, conn: Connection, request: SubscriptionRequest) -> None:
    sub = runtime.hub.subscribe(conn, request)
    conn.subs[request.subscription_id] = sub
    problem = await sync_subscription(runtime, sub)
    if problem is not None:
        runtime.hub.unsubscribe(sub)
        conn.subs.pop(request.subscription_id, None)
        conn.session.forget(request)
        if problem == SYNC_TOO_LARGE:
            message = (
                f"the sync of {request.key} is larger than this connection may queue "
                f"({runtime.config.limits.max_outbound_bytes} bytes)"
            )
        else:
            message = "storage unavailable, retry later"
        _send_error(runtime, conn, problem, message, request)


async def sync_subscription(
    runtime: Runtime, sub: HubSubscription, snapshot: GroupSnapshot | None = None
) -> str | None:
    """Send the sync of the pending ``sub`` and make it live.

    The encoded sync comes from the hub's sync cache (one snapshot read and one encode per key
    until it changes) unless ``snapshot`` is given.

    Returns:
        None once the sync is queued; else the wire error code (``STORE_UNAVAILABLE`` when the
        storage failed, ``SYNC_TOO_LARGE`` when the sync alone exceeds the connection's byte cap),
        and the subscription is left pending for the caller.
    """
    request = sub.request
    hub = runtime.hub

    async def load() -> CachedSync:
        if request.id is None:
            read = await runtime.adapter.get_group(request.stream, request.group)
        else:
            read = await runtime.adapter.get_item_snapshot(
                request.stream, request.group, request.id
            )
        return _encode_sync(request, read, hub.clock.next()), read.seq

    try:
        if snapshot is None:
            sync, seq = await hub.sync_cache.get(request.key, load)
        else:
            sync, seq = _encode_sync(request, snapshot, hub.clock.next()), snapshot.seq
    except StoreError as exc:
        logger.error("sync of %s failed: %s", request.key, exc)
        return STORE_UNAVAILABLE
    if sync.size > sub.conn.outbox.max_bytes:
        return SYNC_TOO_LARGE
    # Stamped now: a cached sync is older than what the client may have seen before.
    hub.activate(sub, sync.restamped(hub.clock.next()), seq)
    return None


def _encode_sync(request: SubscriptionRequest, snapshot: GroupSnapshot, ts: int) -> Frame:
    if request.id is None:
        return encode_group_sync(request.stream, request.group, snapshot.items, ts)
    item = snapshot.items[0] if snapshot.items else None
    return encode_item_sync(request.stream, request.group, request.id, item, ts)
