"""``RedisPresence``: the deployment-wide member sets of presence streams, in Redis.

Obtained from ``RedisStreamAdapter.presence_backend(timeout)``; it shares the adapter's
connection pool and feed channel. Key layout (``<prefix>`` as the adapter's; ``<tag>`` is the
group's hash tag ``<prefix>:{<stream>|<group>}``)::

    <tag>:presence                    HASH  member id -> member JSON ({"id":..,"meta":..})
    <tag>:presence:n                  HASH  member id -> how many instances hold the member
    <prefix>:presence:instances       ZSET  instance id -> deadline (Redis clock, ms)
    <prefix>:presence:inst:<instance> SET   entries [tag, member id, feed head] it holds

How it works. An instance registers (a random id, deadline = now + lease) on its first member
and heartbeats the deadline every ``lease / 3``. ``add`` and ``remove`` are Lua scripts: the
instance's entry goes into (or out of) its SET; the first instance to hold a member of a group
writes the member and PUBLISHes a ``presence`` ``join`` on the feed, the last one to let go deletes
it and PUBLISHes the ``leave``, in the same atomic step as the count, so each transition is
announced exactly once whichever instances race. The entry SET makes both idempotent.

Dead instances. Every instance runs a sweep every ``sweep_interval`` seconds: one script takes
an instance whose deadline has passed and SPOPs a batch of its entries, doing each entry's
leave (count, delete, PUBLISH) atomically; when its SET is empty, the instance is forgotten. A
killed instance's members are thus gone within ``timeout`` (= lease + sweep interval) of its last
heartbeat, and because each entry is popped by one script, each leave is announced once even
with many sweepers. An instance that finds its own deadline passed (a long pause, a Redis outage
longer than the lease, a flushed Redis) stops using that id, registers a new one and has the
tracker add its members again (``on_reset``); the old id's entries are swept like any dead
instance's, so counts stay exact. A graceful shutdown sweeps its own entries at once (``close``).

Deadlines use Redis's clock (``TIME``), so the instances' clocks do not matter. Like the
adapter's TTL index, the sweep touches keys of many groups in one script: fine on one server or
a proxy that does not split scripts, not on a Redis Cluster.

Failure modes: Redis down -> ``StoreError(retryable=True)`` from ``add``/``remove``/``members``
(the tracker retries); heartbeats and sweeps log and keep going.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import orjson

from surge._redis import redis_error
from surge.errors import StoreError
from surge.streams.presence import PresenceMember

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["SWEEP_BATCH", "RedisPresence"]

logger = logging.getLogger(__name__)

SWEEP_BATCH: Final = 500  # entries of a dead instance removed per script call
MAX_SWEEP_INTERVAL_S: Final = 1.0

_NOW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The leave of one entry; (members, counts) keys, member id, feed head, channel. Returns 2 when
# the member left the group (and the leave was published), 1 when other instances still hold it.
_LEAVE_FN: Final = """
local function leave(members, counts, member, head, channel)
  if redis.call('HINCRBY', counts, member, -1) > 0 then
    return 1
  end
  redis.call('HDEL', counts, member)
  local m = redis.call('HGET', members, member)
  redis.call('HDEL', members, member)
  if m then
    redis.call('PUBLISH', channel, '{"kind":"event",' .. head
      .. ',"id":null,"event":{"type":"presence","data":{"action":"leave","member":' .. m .. '}}}')
  end
  return 2
end
"""

# KEYS: instances, instance set, members, counts. ARGV: instance, entry, member id, member JSON,
# feed head, channel. Returns -1 (this instance id is dead), 0 (already held), 1 (held
# elsewhere too), 2 (joined: published).
_ADD: Final = (
    _NOW
    + """
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline or tonumber(deadline) < now then
  return -1
end
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then
  return 0
end
if redis.call('HINCRBY', KEYS[4], ARGV[3], 1) > 1 then
  return 1
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[6], '{"kind":"event",' .. ARGV[5]
  .. ',"id":null,"event":{"type":"presence","data":{"action":"join","member":' .. ARGV[4] .. '}}}')
return 2
"""
)

# KEYS: instance set, members, counts. ARGV: entry, member id, feed head, channel.
_REMOVE: Final = (
    _LEAVE_FN
    + """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
return leave(KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4])
"""
)

# KEYS: instances. ARGV: instance, lease ms, 'register' | 'beat'. Returns 1, or 0 when a beat
# finds the instance dead (deadline passed or forgotten).
_HEARTBEAT: Final = (
    _NOW
    + """
if ARGV[3] == 'beat' then
  local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not deadline or tonumber(deadline) < now then
    return 0
  end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS: instances. ARGV: instance-set key prefix, batch, channel, instance ('' = any dead one).
# Removes up to a batch of one instance's entries. Returns -1 when no instance was due, else
# the number of entries removed (0: that instance is now forgotten).
_SWEEP: Final = (
    _NOW
    + _LEAVE_FN
    + """
local id = ARGV[4]
if id == '' then
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
  if #dead == 0 then
    return -1
  end
  id = dead[1]
end
local set = ARGV[1] .. id
local entries = redis.call('SPOP', set, tonumber(ARGV[2]))
for _, entry in ipairs(entries) do
  local ok, e = pcall(cjson.decode, entry)
  if ok and type(e) == 'table' and type(e[1]) == 'string' and type(e[2]) == 'string'
      and type(e[3]) == 'string' then
    leave(e[1] .. ':presence', e[1] .. ':presence:n', e[2], e[3], ARGV[3])
  end
end
if redis.call('SCARD', set) == 0 then
  redis.call('ZREM', KEYS[1], id)
end
return #entries
"""
)


class RedisPresence:
    """A ``PresenceBackend`` shared by every instance on one Redis (see the module docstring)."""

    def __init__(
        self,
        client: Callable[[], Redis],
        *,
        prefix: str,
        group_tag: Callable[[str, str], str],
        feed_channel: str,
        where: str,
        timeout: float,
    ) -> None:
        self._client = client
        self._group_tag = group_tag
        self._channel = feed_channel
        self._where = where
        self.timeout = timeout
        self.sweep_interval = min(MAX_SWEEP_INTERVAL_S, timeout / 5)
        """Seconds between sweeps for dead instances."""
        self.lease = timeout - self.sweep_interval
        """Seconds an instance stays alive after a heartbeat."""
        self.heartbeat_interval = self.lease / 3
        self.instances_key = f"{prefix}:presence:instances"
        self._set_prefix = f"{prefix}:presence:inst:"
        self.instance = uuid.uuid4().hex
        """This instance's current id (a new one after it was declared dead)."""
        self._is_registered = False
        self._register_lock = asyncio.Lock()
        self._scripts: tuple[Any, dict[str, AsyncScript]] | None = None
        self.on_reset: Callable[[], None] | None = None
        self._is_failing = False

    # -- scripts -------------------------------------------------------------------------------

    def _script(self, name: str) -> AsyncScript:
        client = self._client()
        if self._scripts is None or self._scripts[0] is not client:
            sources = {"add": _ADD, "remove": _REMOVE, "beat": _HEARTBEAT, "sweep": _SWEEP}
            self._scripts = (
                client,
                {key: client.register_script(src) for key, src in sources.items()},
            )
        return self._scripts[1][name]

    async def _run(self, action: str, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._script(name)(keys, args)
        except Exception as exc:
            raise redis_error(exc, f"presence {action}", self._where) from exc

    def _keys(self, stream: str, group: str) -> tuple[str, str]:
        """The group's hash tag and the feed head naming it (``"stream":..,"group":..``)."""
        tag = self._group_tag(stream, group)
        head = b"".join(
            (b'"stream":', orjson.dumps(stream), b',"group":', orjson.dumps(group))
        ).decode()
        return tag, head

    # -- PresenceBackend -----------------------------------------------------------------------

    async def add(self, stream: str, group: str, member: PresenceMember) -> None:
        """Register ``member`` for this instance; the first holder publishes the join."""
        await self._ensure_registered()
        tag, head = self._keys(stream, group)
        entry = orjson.dumps([tag, member["id"], head])
        for _ in range(2):
            instance = self.instance
            reply = await self._run(
                "add",
                "add",
                [
                    self.instances_key,
                    self._set_prefix + instance,
                    f"{tag}:presence",
                    f"{tag}:presence:n",
                ],
                [instance, entry, member["id"], orjson.dumps(member), head, self._channel],
            )
            if reply != -1:
                return
            await self._renew(instance, "its heartbeat deadline had passed")
        raise StoreError("presence add: this instance keeps being declared dead", retryable=True)

    async def remove(self, stream: str, group: str, member_id: str) -> None:
        """Withdraw this instance's hold; the last holder publishes the leave."""
        tag, head = self._keys(stream, group)
        entry = orjson.dumps([tag, member_id, head])
        await self._run(
            "remove",
            "remove",
            [self._set_prefix + self.instance, f"{tag}:presence", f"{tag}:presence:n"],
            [entry, member_id, head, self._channel],
        )

    async def members(self, stream: str, group: str) -> list[PresenceMember]:
        """The group's members on every instance, sorted by id."""
        tag = self._group_tag(stream, group)
        try:
            values = await self._client().hvals(f"{tag}:presence")
        except Exception as exc:
            raise redis_error(exc, "presence read", self._where) from exc
        members: list[PresenceMember] = []
        for value in values:
            try:
                member = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(member, dict) and isinstance(member.get("id"), str):
                members.append(member)  # type: ignore[arg-type]
        members.sort(key=lambda m: m["id"])
        return members

    async def maintain(self) -> None:
        """Heartbeat this instance and sweep dead ones' members, forever."""
        next_beat = 0.0
        while True:
            try:
                if self._is_registered and time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_interval
                    await self._beat()
                await self.sweep()
                if self._is_failing:
                    self._is_failing = False
                    logger.info("presence: Redis at %s answers again", self._where)
            except StoreError as exc:
                level = logging.DEBUG if self._is_failing else logging.WARNING
                self._is_failing = True
                logger.log(level, "presence upkeep failed, retrying: %s", exc)
            await asyncio.sleep(self.sweep_interval)

    async def sweep(self, instance: str = "") -> int:
        """Remove the entries of dead instances (or of ``instance``); returns how many."""
        removed = 0
        while True:
            reply = await self._run(
                "sweep",
                "sweep",
                [self.instances_key],
                [self._set_prefix, SWEEP_BATCH, self._channel, instance],
            )
            if not isinstance(reply, int) or reply < 0:
                return removed
            removed += reply
            if instance and reply == 0:
                return removed

    async def close(self) -> None:
        """Graceful shutdown: remove every entry of this instance now (announcing leaves)."""
        if not self._is_registered:
            return
        self._is_registered = False
        await self.sweep(self.instance)

    # -- registration --------------------------------------------------------------------------

    async def _ensure_registered(self) -> None:
        if self._is_registered:
            return
        async with self._register_lock:
            if not self._is_registered:
                await self._register()

    async def _register(self) -> None:
        await self._run(
            "register",
            "beat",
            [self.instances_key],
            [self.instance, round(self.lease * 1000), "register"],
        )
        self._is_registered = True

    async def _beat(self) -> None:
        instance = self.instance
        alive = await self._run(
            "heartbeat",
            "beat",
            [self.instances_key],
            [instance, round(self.lease * 1000), "beat"],
        )
        if alive != 1:
            await self._renew(instance, "its registration had expired or was gone")

    async def _renew(self, dead: str, why: str) -> None:
        """Id ``dead`` was declared dead: take a new one and have every member added again."""
        async with self._register_lock:
            if self.instance != dead:
                return  # a concurrent call renewed it already
            logger.warning(
                "presence: this instance was declared dead in Redis (%s); re-registering its "
                "members (subscribers see them leave and join again)",
                why,
            )
            self.instance = uuid.uuid4().hex
            self._is_registered = False
            await self._register()
        if self.on_reset is not None:
            self.on_reset()
