"""Presence: who is subscribed to a group, announced to the group and answered on request.

Opt-in per stream (``StreamConfig(presence=True)``). Wire frames: docs/protocol.md, section 6.

Design
------
Where it lives. A ``PresenceTracker`` per server, fed by the hub: ``Hub.activate`` calls
``on_live`` when a group subscription goes live (right after its sync), ``Hub.unsubscribe`` calls
``on_gone``. Those hooks are synchronous, O(1) and never wait: they update this instance's
counts and mark the member *dirty*. One worker task (``run``, owned by the app's lifespan) takes
the dirty members and brings the ``PresenceBackend`` (``surge.streams.presence``) in line: ``add``
when this instance holds a member it has not registered, ``remove`` when it registered one it no
longer holds. The backend keeps the deployment-wide set and announces joins and leaves through
the stream feed (``send``'s path), so they reach every subscriber on every instance, Motia's
clients included (``onEvent("presence", ...)``). After the dirty members, the worker answers
each new subscription with a ``presence`` ``sync`` frame holding the full member list, sent to
that connection only.

Members. A member is a user, not a tab: ``StreamConfig(presence_key="userId")`` (or a callable
of the auth context) names it; several subscriptions of one user (tabs, devices, instances)
count as one member, who leaves when the last one goes. A connection without that key
(anonymous, or no ``presence_key``) is a member of its own, ``conn-<instance>-<n>``.
``presence_meta`` (auth-context keys or a callable) adds a small JSON object, from the member's
first subscription.

What is hot. Nothing on the fan-out path: the hub checks one attribute in ``activate`` and
``unsubscribe``. Joins and leaves cost one backend call per *member transition* (not per tab)
and one member-list read per welcomed subscription (shared by the subscriptions welcomed in the
same round for one group). Because the worker coalesces, a tab that leaves and rejoins before the
worker gets to it costs nothing and announces nothing.

Failure modes.
- Storage down (Redis): ``add``/``remove`` fail with ``StoreError``; the members stay dirty and
  the worker retries with backoff (and welcomes wait for it); local state stays exact, so once
  the storage is back the backend converges to it. If the outage outlasted the heartbeat bound
  the other instances have already removed (and announced the leave of) this instance's members;
  the backend notices (``on_reset``) and everything is added again, announcing the joins.
- Instance killed (``kill -9``): its members stay listed until the backend's bound passes
  (``PresenceSettings.timeout``); then one surviving instance removes them, announcing each
  leave once (``surge.streams.stores.redis_presence``).
- Flapping tabs: coalesced as above; a member is announced only on the deployment-wide
  first-join and last-leave, never per tab.
- A feed gap (``Resync``): every subscription is synced again, and each presence subscription
  gets a fresh ``presence`` sync after it, so clients end with the current list.

Memory is bounded by the live subscriptions: a member's entry goes with its last subscription,
and the dirty and welcome sets only hold keys of those (or of members just gone).

Metrics (``/metrics``, ``surge.server.metrics``): the members this instance holds by stream
(kept by the same O(1) hooks), the member transitions waiting for the backend (what grows while
storage is down), the registrations written (``add``/``remove``) and the backend calls that
failed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from surge.errors import StoreError
from surge.protocol.codec import encode_event
from surge.protocol.ids import id_problem
from surge.server.hub import HubSubscription
from surge.streams.feed import EphemeralEvent
from surge.streams.presence import PresenceBackend, PresenceMember, presence_event

if TYPE_CHECKING:
    from surge.server.clock import EnvelopeClock
    from surge.server.connection import Connection
    from surge.steps.config import StreamConfig
    from surge.steps.registry import Registry

__all__ = ["MAX_META_BYTES", "PresenceTracker"]

logger = logging.getLogger(__name__)

MAX_META_BYTES: Final = 2048  # a member's metadata, as JSON; larger metadata is dropped (logged)
BATCH: Final = 256  # dirty members brought in line per round, concurrently
RETRY_MIN_S: Final = 0.1
RETRY_MAX_S: Final = 5.0

_Key = tuple[str, str, str]  # (stream, group, member id)


@dataclass(slots=True)
class _Held:
    """A member this instance holds in one group: how many live subscriptions, and who."""

    subs: int
    member: PresenceMember


class PresenceTracker:
    """This instance's presence subscriptions, kept in line with a ``PresenceBackend``."""

    def __init__(
        self,
        backend: PresenceBackend,
        registry: Callable[[], Registry],
        clock: EnvelopeClock,
    ) -> None:
        self.backend = backend
        backend.on_reset = self._reset
        self._registry = registry
        self._clock = clock
        self.instance = uuid.uuid4().hex[:8]
        """Names this process in the ids of keyless members (``conn-<instance>-<n>``)."""
        self._subs: dict[HubSubscription, _Key] = {}
        self._held: dict[_Key, _Held] = {}
        self._registered: set[_Key] = set()
        self._dirty: dict[_Key, None] = {}
        self._welcome: dict[HubSubscription, None] = {}
        self._by_stream: dict[str, int] = {}  # members held, per stream (the metrics' gauge)
        self._in_flight = 0  # dirty members taken for a backend call not yet settled
        self.writes = {"add": 0, "remove": 0}
        """Registrations this instance wrote to the backend, by operation."""
        self.failures = 0
        """Backend calls that failed (each is retried with backoff)."""
        self._wake = asyncio.Event()
        self._is_flushing = False
        self._warned: set[str] = set()
        # Set while some stream has presence on: only then does the backend's upkeep run
        # (Redis heartbeats and sweeps cost nothing in a project without presence).
        self._in_use = asyncio.Event()
        self.registry_changed(registry())

    def registry_changed(self, registry: Registry) -> None:
        """Note whether any stream of ``registry`` has presence on (startup, hot reload)."""
        if any(getattr(cfg, "presence", False) for cfg in registry.streams.values()):
            self._in_use.set()

    # -- hub hooks (synchronous, never wait) ---------------------------------------------------

    def on_live(self, sub: HubSubscription) -> None:
        """A group subscription went live (its sync was sent)."""
        if sub in self._subs:  # synced again after a feed gap: only a fresh list
            self._welcome[sub] = None
            self._wake.set()
            return
        request = sub.request
        config = self._registry().streams.get(request.stream)
        if config is None or not getattr(config, "presence", False):
            return
        member = self._member_of(sub.conn, config)
        key = (request.stream, request.group, member["id"])
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held(0, member)
            self._dirty[key] = None
            self._by_stream[request.stream] = self._by_stream.get(request.stream, 0) + 1
        held.subs += 1
        self._subs[sub] = key
        self._welcome[sub] = None
        self._wake.set()

    def on_gone(self, sub: HubSubscription) -> None:
        """A subscription was removed (leave, replaced, connection closed)."""
        key = self._subs.pop(sub, None)
        if key is None:
            return
        self._welcome.pop(sub, None)
        held = self._held[key]
        held.subs -= 1
        if held.subs == 0:
            del self._held[key]
            self._dirty[key] = None
            self._wake.set()
            stream = key[0]
            left = self._by_stream[stream] - 1
            if left:
                self._by_stream[stream] = left
            else:
                del self._by_stream[stream]

    # -- answers -------------------------------------------------------------------------------

    async def members(self, stream: str, group: str) -> list[PresenceMember]:
        """The group's members in the deployment (``stream.presence(group)``)."""
        return await self.backend.members(stream, group)

    def is_idle(self) -> bool:
        """True when nothing waits for the backend (tests)."""
        return not self._dirty and not self._welcome and not self._is_flushing

    def members_by_stream(self) -> dict[str, int]:
        """How many members this instance's subscriptions hold, per stream (a user in two tabs
        of one group is one; in two groups, two)."""
        return dict(self._by_stream)

    @property
    def pending(self) -> int:
        """Member joins and leaves not yet written to the backend (those being written too)."""
        return len(self._dirty) + self._in_flight

    def sizes(self) -> dict[str, int]:
        """How many entries each internal table holds (tests of bounded memory)."""
        return {
            "subscriptions": len(self._subs),
            "members": len(self._held),
            "registered": len(self._registered),
            "dirty": len(self._dirty),
            "welcome": len(self._welcome),
            "streams": len(self._by_stream),
        }

    # -- the worker ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Lifespan task: the backend's upkeep and the worker, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._maintain())
            await self._work()

    async def _maintain(self) -> None:
        await self._in_use.wait()
        await self.backend.maintain()

    async def _work(self) -> None:
        delay = RETRY_MIN_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._is_flushing = True
            try:
                ok = await self._flush()
            finally:
                self._is_flushing = False
            if ok:
                delay = RETRY_MIN_S
                if "storage" in self._warned:
                    # The next outage is worth a warning again.
                    self._warned.discard("storage")
                    logger.info("presence: storage reachable again, members up to date")
                continue
            # Storage trouble: keep what is dirty and try again later.
            self._wake.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _flush(self) -> bool:
        """Bring the backend in line, then welcome new subscriptions; False if storage failed."""
        while self._dirty:
            batch = list(itertools.islice(self._dirty, BATCH))
            for key in batch:
                del self._dirty[key]
            self._in_flight = len(batch)
            try:
                results = await asyncio.gather(*(self._settle(key) for key in batch))
            finally:
                self._in_flight = 0
            failed = [key for key, ok in zip(batch, results, strict=True) if not ok]
            if failed:
                for key in failed:
                    self._dirty[key] = None
                return False
        return await self._send_welcomes()

    async def _settle(self, key: _Key) -> bool:
        stream, group, member_id = key
        try:
            held = self._held.get(key)
            if held is not None and key not in self._registered:
                await self.backend.add(stream, group, held.member)
                self._registered.add(key)
                self.writes["add"] += 1
            elif held is None and key in self._registered:
                await self.backend.remove(stream, group, member_id)
                self._registered.discard(key)
                self.writes["remove"] += 1
        except StoreError as exc:
            self.failures += 1
            self._warn("storage", "presence of %s/%s not updated yet, retrying: %s", *key[:2], exc)
            return False
        except Exception:
            self.failures += 1
            logger.exception("presence of %s/%s: the backend failed; retrying", *key[:2])
            return False
        return True

    async def _send_welcomes(self) -> bool:
        if not self._welcome:
            return True
        subs = list(self._welcome)
        self._welcome.clear()
        by_group: dict[tuple[str, str], list[HubSubscription]] = {}
        for sub in subs:
            by_group.setdefault((sub.request.stream, sub.request.group), []).append(sub)
        for (stream, group), group_subs in by_group.items():
            try:
                members = await self.backend.members(stream, group)
            except StoreError as exc:
                self.failures += 1
                self._warn(
                    "storage", "presence of %s/%s not read, retrying: %s", *(stream, group), exc
                )
                for sub in group_subs:
                    if sub in self._subs:
                        self._welcome[sub] = None
                return False
            event = EphemeralEvent(stream, group, None, presence_event("sync", members=members))
            frame = encode_event(event, self._clock.next())
            for sub in group_subs:
                if sub in self._subs and not sub.is_removed:
                    sub.conn.send(frame)
        return True

    def _reset(self) -> None:
        """The backend lost this instance's registrations: register everything again."""
        self._registered.clear()
        self._dirty.update(dict.fromkeys(self._held))
        self._welcome.update(dict.fromkeys(self._subs))
        self._wake.set()

    async def close(self) -> None:
        """Withdraw this instance's members from the backend (shutdown)."""
        try:
            await self.backend.close()
        except StoreError as exc:
            logger.warning("presence: could not withdraw this instance's members: %s", exc)
        self._registered.clear()

    # -- members -------------------------------------------------------------------------------

    def _member_of(self, conn: Connection, config: StreamConfig) -> PresenceMember:
        context = conn.auth_context
        member_id = _member_id(config.presence_key, context) if context is not None else None
        if member_id is None:
            member_id = f"conn-{self.instance}-{conn.id}"
        elif (problem := id_problem(member_id, "presence member id")) is not None:
            self._warn(
                config.name,
                "stream %r: presence_key gave an unusable member id (%s); counting the connection",
                config.name,
                problem,
            )
            member_id = f"conn-{self.instance}-{conn.id}"
        member: PresenceMember = {"id": member_id}
        meta = self._meta_of(config, context)
        if meta is not None:
            member["meta"] = meta
        return member

    def _meta_of(self, config: StreamConfig, context: Any) -> dict[str, Any] | None:
        spec = config.presence_meta
        if spec is None or context is None:
            return None
        try:
            if callable(spec):
                meta = spec(context)
            else:
                meta = {name: _field(context, name) for name in spec}
            if meta is None:
                return None
            if not isinstance(meta, Mapping):
                raise TypeError(f"presence_meta returned {type(meta).__name__}, not a dict")
            data = orjson.dumps(dict(meta))
        except Exception as exc:
            self._warn(config.name, "stream %r: presence_meta failed: %s", config.name, exc)
            return None
        if len(data) > MAX_META_BYTES:
            self._warn(
                config.name,
                "stream %r: presence metadata over %d bytes is dropped",
                config.name,
                MAX_META_BYTES,
            )
            return None
        decoded: dict[str, Any] = orjson.loads(data)
        return decoded

    def _warn(self, topic: str, message: str, *args: Any) -> None:
        """Log a problem once per topic at warning (then at debug): it may repeat per join."""
        level = logging.DEBUG if topic in self._warned else logging.WARNING
        if len(self._warned) < 1024:
            self._warned.add(topic)
        logger.log(level, message, *args)


def _field(context: Any, name: str) -> Any:
    if isinstance(context, Mapping):
        return context.get(name)
    return getattr(context, name, None)


def _member_id(key: str | Callable[[Any], Any] | None, context: Any) -> str | None:
    if key is None:
        return None
    try:
        value = key(context) if callable(key) else _field(context, key)
    except Exception:
        logger.exception("presence_key raised; counting the connection as its own member")
        return None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) else None
