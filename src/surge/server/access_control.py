"""Access after the upgrade: token expiry, ``reauthorize`` and ``revoke`` (issue 15 item 5).

**Expiry.** When the auth context ``authenticate`` returned carries ``exp`` (epoch seconds, as
in a JWT; a dict key or an attribute, so a ``context_schema`` model must declare it), the
connection is closed with 4001 (``CloseCode.TOKEN_EXPIRED``) at that moment, and an upgrade
whose context has already expired is refused with 401. The client refreshes its token and
reconnects. There is no timer per connection: one heap of (exp, connection) for the process,
swept by one task (``run``, in the app's lifespan) that sleeps until the earliest expiry or
until a connection with an earlier one arrives. Entries of connections that ended are dropped
lazily, and the heap is rebuilt when they outnumber the live ones, so it stays within twice the
connections that have an ``exp``.

**Reauthorize.** ``reauthorize(where)`` re-runs ``can_access`` (with
``Limits.access_check_timeout``, exceptions and timeouts deny) for every live subscription of
the matching connections, concurrently, and removes exactly those now denied, each with a
``STREAM_ACCESS_DENIED`` error event addressed like its join; the connection stays open. A join
whose async ``can_access`` was already running meanwhile is checked once more before it is
granted (``generation``), since it may have read the data before the change.

**Revoke.** ``revoke(where)`` closes the matching connections with 4003
(``CloseCode.ACCESS_REVOKED``).

**Across instances.** With a ``ControlChannel`` adapter (Redis) both commands are published
(``{"type": "access", "action", "where", "origin"}``) before this instance acts, so every
instance works in parallel; each applies what others publish (in a bounded queue served by the
same lifespan task) and ignores its own. ``where`` must then be JSON (see
``surge.streams.control``). On one Redis the command reaches the other instances in about a
millisecond; the whole cut takes as long as the slowest ``can_access``.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from surge.errors import AccessRevokedError, TokenExpiredError, ValidationError, error_mapping
from surge.protocol.messages import SubscriptionRequest
from surge.protocol.session import Action
from surge.steps.config import Subscription
from surge.streams.control import AccessMatch, ControlChannel, ControlMessage

if TYPE_CHECKING:
    from surge.config import Config
    from surge.server.connection import Connection
    from surge.steps.registry import Registry
    from surge.streams.adapter import StreamAdapter

__all__ = ["AccessControl", "call_can_access", "expiry_of"]

logger = logging.getLogger(__name__)

Perform = Callable[[list[Action]], Awaitable[None]]

COMMAND_QUEUE: Final = 1024  # commands from other instances waiting to be applied
CHECK_CONCURRENCY: Final = 64  # can_access calls of one reauthorize at once
_COMPACT_MIN: Final = 1024
_MISSING: Final = object()


class RuntimeView(Protocol):
    """What access control reads of the server's ``Runtime`` (current config and registry)."""

    adapter: StreamAdapter
    config: Config
    registry: Registry


def expiry_of(context: Any) -> float | None:
    """The ``exp`` (epoch seconds) an auth context carries, or None.

    Raises:
        ValidationError: ``exp`` is there but not a number.
    """
    if context is None:
        return None
    exp = context.get("exp") if isinstance(context, Mapping) else getattr(context, "exp", None)
    if exp is None:
        return None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or math.isnan(exp):
        raise ValidationError(
            f"the auth context's exp must be epoch seconds (a number), not {exp!r}",
            [{"loc": ["exp"], "msg": "not a number", "type": "type_error"}],
        )
    return float(exp)


async def call_can_access(
    rule: Callable[..., Any] | None,
    request: SubscriptionRequest,
    auth: Any,
    timeout: float,  # noqa: ASYNC109 - the stream's access_check_timeout, applied inside
) -> bool:
    """Run a stream's ``can_access`` (sync or async) for ``request``; errors and timeouts deny."""
    if rule is None:
        return True
    try:
        verdict = rule(Subscription(groupId=request.group, id=request.id), auth)
        if inspect.isawaitable(verdict):
            async with asyncio.timeout(timeout):
                verdict = await verdict
    except TimeoutError:
        logger.warning("can_access of stream %r timed out; access denied", request.stream)
        return False
    except Exception:
        logger.exception("can_access of stream %r raised; access denied", request.stream)
        return False
    return bool(verdict)


class AccessControl:
    """Expiry, reauthorize and revoke for one process's connections."""

    def __init__(self, runtime: RuntimeView) -> None:
        self._runtime = runtime
        self.instance = uuid.uuid4().hex
        self._conns: dict[Connection, Perform] = {}
        # Bumped for a connection each time reauthorize matches it: an access check that was
        # already waiting then runs again before it may grant (the endpoint compares).
        self._generations: dict[Connection, int] = {}
        self._heap: list[tuple[float, int, Connection]] = []
        self._expiring: dict[Connection, float] = {}
        self._wake = asyncio.Event()
        self._commands: asyncio.Queue[ControlMessage] = asyncio.Queue(COMMAND_QUEUE)
        adapter = runtime.adapter
        self._channel = adapter if isinstance(adapter, ControlChannel) else None
        if self._channel is not None:
            self._channel.set_control_sink(self._on_control)

    # -- connections -----------------------------------------------------------------------------

    def attach(self, conn: Connection, perform: Perform) -> None:
        """A connection opened; ``perform`` runs its session's actions (the endpoint's)."""
        self._conns[conn] = perform
        try:
            exp = expiry_of(conn.auth_context)
        except ValidationError:
            exp = None  # the upgrade refused such contexts already
        if exp is None:
            return
        self._expiring[conn] = exp
        heapq.heappush(self._heap, (exp, conn.id, conn))
        if self._heap[0][2] is conn:
            self._wake.set()

    def detach(self, conn: Connection) -> None:
        """The connection ended."""
        self._conns.pop(conn, None)
        self._generations.pop(conn, None)
        if self._expiring.pop(conn, None) is not None:
            heap = self._heap
            if len(heap) > _COMPACT_MIN and len(heap) > 2 * len(self._expiring):
                self._heap = [entry for entry in heap if self._expiring.get(entry[2]) == entry[0]]
                heapq.heapify(self._heap)

    def generation(self, conn: Connection) -> int:
        """How many reauthorize commands have matched ``conn`` so far."""
        return self._generations.get(conn, 0)

    @property
    def expiring(self) -> int:
        """How many open connections have an expiry (for tests)."""
        return len(self._expiring)

    async def _close(self, conn: Connection, code: int, reason: str) -> bool:
        perform = self._conns.get(conn)
        if perform is None or conn.is_gone or conn.session.closed:
            return False
        await perform(conn.session.close(code, reason))
        return True

    # -- the lifespan task -------------------------------------------------------------------

    async def run(self) -> None:
        """Close connections as their tokens expire; apply other instances' commands."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._expire())
            tasks.create_task(self._serve_commands())

    async def _expire(self) -> None:
        code = error_mapping(TokenExpiredError()).close_code
        while True:
            self._wake.clear()
            heap = self._heap
            while heap and self._expiring.get(heap[0][2]) != heap[0][0]:
                heapq.heappop(heap)  # the connection ended (or is already being closed)
            if not heap:
                await self._wake.wait()
                continue
            delay = heap[0][0] - time.time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            _, _, conn = heapq.heappop(heap)
            del self._expiring[conn]
            await self._close(conn, code, "token expired")

    async def _serve_commands(self) -> None:
        while True:
            message = await self._commands.get()
            try:
                await self._apply(message)
            except Exception:
                logger.exception("applying an access command from another instance failed")

    def _on_control(self, message: ControlMessage) -> None:
        """A control message from the channel (called on the event loop by the adapter)."""
        if message.get("type") != "access" or message.get("origin") == self.instance:
            return
        try:
            self._commands.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning("dropped an access command from another instance: queue full")

    async def _apply(self, message: ControlMessage) -> None:
        where = message.get("where")
        if where is not None and not isinstance(where, dict):
            logger.warning("ignored an access command with a malformed 'where': %r", where)
            return
        action = message.get("action")
        if action == "reauthorize":
            await self._reauthorize_here(where)
        elif action == "revoke":
            await self._revoke_here(where)
        else:
            logger.warning("ignored an access command with an unknown action %r", action)

    # -- commands ----------------------------------------------------------------------------

    async def reauthorize(self, where: AccessMatch = None) -> int:
        """See ``surge.streams.stream.Streams.reauthorize``."""
        await self._publish("reauthorize", where)
        return await self._reauthorize_here(where)

    async def revoke(self, where: AccessMatch = None) -> int:
        """See ``surge.streams.stream.Streams.revoke``."""
        await self._publish("revoke", where)
        return await self._revoke_here(where)

    async def _publish(self, action: str, where: AccessMatch) -> None:
        if callable(where):
            if self._runtime.adapter.is_distributed:
                raise ValueError(
                    f"{action}: a function cannot reach the other instances; pass the auth "
                    'context fields to match instead, e.g. {"userId": "u1"}'
                )
            return
        if where is not None and not isinstance(where, Mapping):
            raise TypeError(f"{action}: where must be a mapping, a function or None")
        if self._channel is None:
            return
        message: ControlMessage = {
            "type": "access",
            "action": action,
            "origin": self.instance,
            "where": None if where is None else dict(where),
        }
        try:
            orjson.dumps(message)
        except TypeError as exc:
            raise ValueError(f"{action}: where must hold JSON values: {exc}") from exc
        await self._channel.publish_control(message)

    def _matching(self, where: AccessMatch) -> list[tuple[Connection, Perform]]:
        match = _matcher(where)
        return [
            (conn, perform)
            for conn, perform in list(self._conns.items())
            if not conn.is_gone and match(conn.auth_context)
        ]

    async def _reauthorize_here(self, where: AccessMatch) -> int:
        runtime = self._runtime
        timeout = runtime.config.limits.access_check_timeout
        gate = asyncio.Semaphore(CHECK_CONCURRENCY)

        async def recheck(conn: Connection, perform: Perform, request: SubscriptionRequest) -> int:
            stream = runtime.registry.streams.get(request.stream)
            async with gate:
                allowed = stream is not None and await call_can_access(
                    stream.can_access, request, conn.auth_context, timeout
                )
            if allowed:
                return 0
            actions = conn.session.revoke(request, "access revoked")
            if not actions:
                return 0  # left, replaced or closed meanwhile
            await perform(actions)
            return 1

        matching = self._matching(where)
        generations = self._generations
        for conn, _ in matching:
            generations[conn] = generations.get(conn, 0) + 1
        checks = [
            recheck(conn, perform, request)
            for conn, perform in matching
            for request in list(conn.session.subscriptions.values())
        ]
        if not checks:
            return 0
        removed = await asyncio.gather(*checks)
        return sum(removed)

    async def _revoke_here(self, where: AccessMatch) -> int:
        code = error_mapping(AccessRevokedError()).close_code
        closed = 0
        for conn, _ in self._matching(where):
            closed += await self._close(conn, code, "access revoked")
        return closed


def _matcher(where: AccessMatch) -> Callable[[Any], bool]:
    if where is None:
        return lambda _context: True
    if callable(where):
        predicate = where

        def call(context: Any) -> bool:
            try:
                return bool(predicate(context))
            except Exception:
                logger.exception("the reauthorize/revoke predicate raised; connection skipped")
                return False

        return call
    fields = list(where.items())

    def match(context: Any) -> bool:
        if context is None:
            return False
        get = context.get if isinstance(context, Mapping) else None
        for key, value in fields:
            found = get(key, _MISSING) if get is not None else getattr(context, key, _MISSING)
            if found is _MISSING or found != value:
                return False
        return True

    return match
