"""``RedisStreamsQueue``: queues on Redis Streams with consumer groups, shared by every instance.

Key layout, per queue ``Q`` (``<prefix>`` defaults to ``surge``; ``{Q}`` is the Redis Cluster hash
tag, so every key of a queue is in one slot and each script touches one slot)::

    <prefix>:q:{Q}:stream     STREAM  entries {id, g (FIFO group or ""), att}; group "surge"
    <prefix>:q:{Q}:body       HASH    message id -> body JSON {topic, trace_id, data, enqueued_at}
                                  (+ trace_parent with tracing on)
    <prefix>:q:{Q}:delayed    ZSET    "att|id|group" scored by ready time (ms, Redis clock)
    <prefix>:q:{Q}:heads      HASH    FIFO group -> id of its one active message
    <prefix>:q:{Q}:waiting    ZSET    "group NUL seq NUL id" (all score 0, read by lex range)
    <prefix>:q:{Q}:seq        STRING  counter ordering ``waiting``
    <prefix>:q:{Q}:cursor     STRING  where the next XAUTOCLAIM scan starts
    <prefix>:q:{Q}:dead       ZSET    dead message id -> failed_at (ms)
    <prefix>:q:{Q}:deadinfo   HASH    dead message id -> {error, failed_at, attempts} JSON
    <prefix>:q:{Q}:deadgroup  HASH    dead message id -> its FIFO group ("" for none)

Delivery. ``receive`` is one Lua script: it moves due retries from ``delayed`` into the stream,
takes over entries whose lease ran out (``XAUTOCLAIM`` with ``min-idle-time`` = the lease: the
claimer's lease decides, so use one lease per queue everywhere), then reads new entries
(``XREADGROUP ... >``). The attempt is the entry's ``att`` (attempts before it was re-added) plus
its delivery count in the pending list. ``ack``, ``retry``, ``extend`` and ``dead_letter`` first
check, in their script, that the entry is still pending for this consumer with the same delivery
count (else the lease was lost and nothing happens); ``extend`` resets the idle time with
``XCLAIM ... JUSTID`` to itself. Acked entries are XACKed and XDELed: the stream holds only live
messages. ``retry`` XACKs the entry and parks it in ``delayed``; the next ``receive`` (by any
instance) re-adds it when due. A delay of 0 re-adds it at once.

FIFO groups hold across instances by construction: at most one message per (queue, group) is
ever in the stream or in ``delayed`` (its *head*, recorded in ``heads``); the others wait in
``waiting`` in publish order. Acking or dead-lettering the head promotes the next waiting one in
the same script. ``replay`` of a grouped dead letter appends it to its group.

Redelivery after a crash: entries of a dead consumer are claimed by anyone once idle longer than
the lease. Consumer names carry the process identity (``surge.queues.base.process_identity``);
``receive`` looks at the group's consumers on first use of a queue and every
``HOUSEKEEPING_S``: those of dead processes on this host (a restart after ``kill -9``) are taken
over at once with XCLAIM and then deleted, and consumers without pending entries that are dead
or idle for over ``IDLE_CONSUMER_S`` are deleted.

``wait`` checks (one script) for entries the group has not delivered yet and for due retries,
then blocks in ``XREAD BLOCK`` from the group's last delivered id (so an entry added meanwhile
wakes it) for at most ``poll_interval`` seconds or until the next retry is due, on a separate
connection pool whose socket timeout allows the block.

Atomicity: ``publish`` to several queues is one MULTI/EXEC of per-queue scripts (one endpoint;
across cluster slots it would need a single-slot layout). Durability is Redis's persistence
(``appendonly``/``appendfsync``). Failures: connection errors and timeouts raise
``StoreError(retryable=True)``; redis-py reconnects on the next call. Commands are not retried
automatically (a lost reply may hide an applied change).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import orjson

from surge._redis import redis_error
from surge.errors import ConfigError, StoreError
from surge.queues.base import (
    DeadLetter,
    Delivery,
    Envelope,
    QueueStats,
    encode_data,
    is_dead_local_process,
    process_identity,
    validate_publish,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = [
    "COMMAND_TIMEOUT_S",
    "CONSUMER_GROUP",
    "HOUSEKEEPING_S",
    "IDLE_CONSUMER_S",
    "POLL_INTERVAL_S",
    "RedisStreamsQueue",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

COMMAND_TIMEOUT_S: Final = 2.0
POLL_INTERVAL_S: Final = 1.0  # longest XREAD BLOCK of wait()
HOUSEKEEPING_S: Final = 5.0
IDLE_CONSUMER_S: Final = 3600.0
MAX_CONNECTIONS: Final = 64
CONSUMER_GROUP: Final = "surge"
MAX_POISON_ROUNDS: Final = 8  # receive() refills past poison at most this often per call

_ESCAPE_TABLE: Final = {ord(c): f"%{ord(c):02X}" for c in "%|{}:*?[]\\"}


_LUA_LIB: Final = r"""
local function ensure_group(stream, cg)
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, cg, '0', 'MKSTREAM')
  end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function owned(stream, cg, eid, consumer, count)
  local p = redis.call('XPENDING', stream, cg, eid, eid, 1)
  return #p == 1 and p[1][2] == consumer and tonumber(p[1][4]) == tonumber(count)
end
local function wait_member(seqkey, group, id)
  local seq = redis.call('INCR', seqkey)
  return group .. '\0' .. string.format('%016x', seq) .. '\0' .. id
end
-- After the head `id` of `group` left the queue: the next waiting message becomes the head.
local function promote(stream, heads, waiting, group, id)
  if group == '' or redis.call('HGET', heads, group) ~= id then return end
  local nxt = redis.call('ZRANGEBYLEX', waiting, '[' .. group .. '\0', '(' .. group .. '\1',
                         'LIMIT', 0, 1)
  if #nxt == 0 then
    redis.call('HDEL', heads, group)
    return
  end
  redis.call('ZREM', waiting, nxt[1])
  local next_id = string.sub(nxt[1], #group + 19)
  redis.call('HSET', heads, group, next_id)
  redis.call('XADD', stream, '*', 'id', next_id, 'g', group, 'att', '0')
end
local function entry_out(bodykey, entry, count)
  local fields = {}
  for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
  local id = fields['id'] or ''
  local body = false
  if id ~= '' then body = redis.call('HGET', bodykey, id) end
  return {entry[1], id, fields['g'] or '', fields['att'] or '0', tostring(count), body or ''}
end
"""

# KEYS: stream, body, heads, waiting, seq. ARGV: group name, id, body, FIFO group ("" if none).
_PUBLISH: Final = (
    _LUA_LIB
    + r"""
ensure_group(KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
local group = ARGV[4]
if group ~= '' and redis.call('HSETNX', KEYS[3], group, ARGV[2]) == 0 then
  redis.call('ZADD', KEYS[4], 0, wait_member(KEYS[5], group, ARGV[2]))
  return 0
end
redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'g', group, 'att', '0')
return 1
"""
)

# KEYS: stream, body, delayed, cursor. ARGV: group name, consumer, lease ms, limit.
# Returns a list of {entry id, message id, FIFO group, att, delivery count, body}.
_RECEIVE: Final = (
    _LUA_LIB
    + r"""
local stream, cg, consumer = KEYS[1], ARGV[1], ARGV[2]
local lease, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
ensure_group(stream, cg)
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms(), 'LIMIT', 0, 256)
for _, member in ipairs(due) do
  local att, id, group = string.match(member, '^(%d+)|([^|]+)|(.*)$')
  if att then redis.call('XADD', stream, '*', 'id', id, 'g', group, 'att', att) end
  redis.call('ZREM', KEYS[3], member)
end
local out = {}
local cursor = redis.call('GET', KEYS[4]) or '0-0'
local claimed = redis.call('XAUTOCLAIM', stream, cg, consumer, lease, cursor, 'COUNT', limit)
redis.call('SET', KEYS[4], claimed[1])
for _, entry in ipairs(claimed[2]) do
  if type(entry) == 'table' then
    local p = redis.call('XPENDING', stream, cg, entry[1], entry[1], 1)
    if #p == 1 then out[#out + 1] = entry_out(KEYS[2], entry, p[1][4]) end
  end
end
if #out < limit then
  local fresh = redis.call('XREADGROUP', 'GROUP', cg, consumer, 'COUNT', limit - #out,
                           'STREAMS', stream, '>')
  if fresh then
    for _, entry in ipairs(fresh[1][2]) do out[#out + 1] = entry_out(KEYS[2], entry, 1) end
  end
end
return out
"""
)

# KEYS: stream, body. ARGV: group name, consumer, dead consumer, limit. Same reply as receive.
_TAKE_OVER: Final = (
    _LUA_LIB
    + r"""
local stream, cg, consumer, dead = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local out = {}
local pending = redis.call('XPENDING', stream, cg, '-', '+', tonumber(ARGV[4]), dead)
for _, p in ipairs(pending) do
  local claimed = redis.call('XCLAIM', stream, cg, consumer, 0, p[1])
  if #claimed == 1 and type(claimed[1]) == 'table' then
    out[#out + 1] = entry_out(KEYS[2], claimed[1], tonumber(p[4]) + 1)
  end
end
if #redis.call('XPENDING', stream, cg, '-', '+', 1, dead) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', stream, cg, dead)
end
return out
"""
)

# KEYS: stream. ARGV: group name, consumer, entry id, delivery count.
_EXTEND: Final = (
    _LUA_LIB
    + r"""
if not owned(KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""
)

# KEYS: stream, body, heads, waiting. ARGV: group name, consumer, entry id, count, id, group.
_ACK: Final = (
    _LUA_LIB
    + r"""
if not owned(KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[4]) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[5])
promote(KEYS[1], KEYS[3], KEYS[4], ARGV[6], ARGV[5])
return 1
"""
)

# KEYS: stream, delayed. ARGV: group name, consumer, entry id, count, id, group, att, delay ms.
_RETRY: Final = (
    _LUA_LIB
    + r"""
if not owned(KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[4]) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
local delay = tonumber(ARGV[8])
if delay <= 0 then
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[5], 'g', ARGV[6], 'att', ARGV[7])
else
  redis.call('ZADD', KEYS[2], now_ms() + delay, ARGV[7] .. '|' .. ARGV[5] .. '|' .. ARGV[6])
end
return 1
"""
)

# KEYS: stream, heads, waiting, dead, deadinfo, deadgroup.
# ARGV: group name, consumer, entry id, count, id, group, info JSON, failed_at ms.
_DEAD_LETTER: Final = (
    _LUA_LIB
    + r"""
if not owned(KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[4]) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[4], tonumber(ARGV[8]), ARGV[5])
redis.call('HSET', KEYS[5], ARGV[5], ARGV[7])
redis.call('HSET', KEYS[6], ARGV[5], ARGV[6])
promote(KEYS[1], KEYS[2], KEYS[3], ARGV[6], ARGV[5])
return 1
"""
)

# KEYS: stream, heads, waiting, seq, dead, deadinfo, deadgroup. ARGV: group name, id.
_REPLAY: Final = (
    _LUA_LIB
    + r"""
local id = ARGV[2]
if not redis.call('ZSCORE', KEYS[5], id) then return 0 end
local group = redis.call('HGET', KEYS[7], id) or ''
redis.call('ZREM', KEYS[5], id)
redis.call('HDEL', KEYS[6], id)
redis.call('HDEL', KEYS[7], id)
ensure_group(KEYS[1], ARGV[1])
if group ~= '' and redis.call('HSETNX', KEYS[2], group, id) == 0 then
  redis.call('ZADD', KEYS[3], 0, wait_member(KEYS[4], group, id))
  return 1
end
redis.call('XADD', KEYS[1], '*', 'id', id, 'g', group, 'att', '0')
return 1
"""
)

# KEYS: body, dead, deadinfo, deadgroup. ARGV: id.
_DISCARD: Final = r"""
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"""

# KEYS: stream, delayed, waiting, dead. ARGV: group name. Returns {ready, delayed, pending, dead}.
_STATS: Final = r"""
local length, pending = 0, 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  length = redis.call('XLEN', KEYS[1])
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
  if type(p) == 'table' and p.err == nil then pending = tonumber(p[1]) end
end
return {length - pending + redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[2]), pending,
        redis.call('ZCARD', KEYS[4])}
"""

# KEYS: stream, delayed. ARGV: group name.
# Returns {now ms, next retry ms or -1, the group's last delivered id, 1 if undelivered entries}.
_PEEK: Final = (
    _LUA_LIB
    + r"""
local now = now_ms()
local due = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local due_ms = -1
if #due > 0 then due_ms = tonumber(due[2]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return {now, due_ms, '0-0', 0} end
local last = '0-0'
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == ARGV[1] then last = info['last-delivered-id'] end
end
local has_new = 0
if redis.call('XREAD', 'COUNT', 1, 'STREAMS', KEYS[1], last) then has_new = 1 end
return {now, due_ms, last, has_new}
"""
)


@dataclass(frozen=True, slots=True)
class _Receipt:
    """Which pending entry a delivery is, and whose: the checks of ack/retry/extend."""

    entry_id: str
    consumer: str
    count: int
    group: str


@dataclass(frozen=True, slots=True)
class _QueueKeys:
    stream: str
    body: str
    delayed: str
    heads: str
    waiting: str
    seq: str
    cursor: str
    dead: str
    deadinfo: str
    deadgroup: str


def _load_redis() -> ModuleType:
    try:
        import redis.asyncio
    except ImportError as exc:
        raise ConfigError(
            "RedisStreamsQueue needs the redis package: pip install 'surge[redis]'"
        ) from exc
    return redis.asyncio


def _describe(url: str) -> str:
    """``url`` without credentials or query (which may carry a password), for messages."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return "<invalid Redis URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}{parts.path}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamsQueue:
    """A ``MessageQueue`` on Redis Streams, shared by every instance (see the module doc)."""

    is_distributed = True  # Every process on the same Redis takes from the same queues.

    _scripts: dict[str, AsyncScript]

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "surge",
        poll_interval: float = POLL_INTERVAL_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """Configure (no I/O yet): ``url``, else ``$SURGE_REDIS_URL``, else localhost.

        ``poll_interval`` bounds one ``wait``'s block (lease expiries and other processes'
        retries are noticed within it).

        Raises:
            ConfigError: redis-py is not installed, or ``prefix`` is not usable.
        """
        _load_redis()
        if not prefix or any(c in prefix for c in "{}*?[]\\"):
            raise ConfigError(f"Redis prefix {prefix!r} must be non-empty, without {{}}*?[]\\")
        if poll_interval <= 0:
            raise ConfigError(f"poll_interval must be positive, not {poll_interval!r}")
        self._url = url or os.environ.get("SURGE_REDIS_URL") or "redis://localhost:6379/0"
        self.where = _describe(self._url)
        """The server, for messages: the URL without credentials."""
        self.prefix = prefix
        self.poll_interval = poll_interval
        self._max_connections = max_connections
        self.identity = process_identity()
        """This queue object's identity, the start of each of its consumer names."""
        self._client: Redis | None = None
        self._blocking: Redis | None = None
        self._pending: set[str] = set()
        self._housekept: dict[str, float] = {}
        self._open_lock = asyncio.Lock()
        self._is_closed = False

    def __repr__(self) -> str:
        return f"RedisStreamsQueue({self.where!r}, prefix={self.prefix!r})"

    def queue_keys(self, queue: str) -> _QueueKeys:
        """Every key of ``queue`` (one hash tag, one cluster slot)."""
        tag = f"{self.prefix}:q:{{{queue.translate(_ESCAPE_TABLE)}}}"
        return _QueueKeys(
            *(
                f"{tag}:{name}"
                for name in (
                    "stream",
                    "body",
                    "delayed",
                    "heads",
                    "waiting",
                    "seq",
                    "cursor",
                    "dead",
                    "deadinfo",
                    "deadgroup",
                )
            )
        )

    def consumer_name(self, consumer: str) -> str:
        """The Redis consumer name for the caller's ``consumer``: ``<identity>|<consumer>``."""
        return f"{self.identity}|{consumer}"

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and check the server with PING; idempotent.

        Raises:
            StoreError: Redis cannot be reached (``retryable=True``) or refuses the credentials.
        """
        async with self._open_lock:
            if self._is_closed:
                raise StoreError("queue is closed")
            if self._client is not None:
                return
            client = self._connect(COMMAND_TIMEOUT_S, self._max_connections)
            try:
                await client.ping()
            except Exception as exc:
                await client.aclose(close_connection_pool=True)
                error = self._error(exc, "PING")
                if not error.retryable:
                    raise error from exc
                raise StoreError(
                    f"cannot reach Redis at {self.where}: {exc}", retryable=True
                ) from exc
            self._client = client
            self._blocking = self._connect(
                self.poll_interval + COMMAND_TIMEOUT_S, self._max_connections
            )
            sources = {
                "publish": _PUBLISH,
                "receive": _RECEIVE,
                "take_over": _TAKE_OVER,
                "extend": _EXTEND,
                "ack": _ACK,
                "retry": _RETRY,
                "dead_letter": _DEAD_LETTER,
                "replay": _REPLAY,
                "discard": _DISCARD,
                "stats": _STATS,
                "peek": _PEEK,
            }
            self._scripts = {name: client.register_script(src) for name, src in sources.items()}

    def _connect(self, socket_timeout: float, max_connections: int) -> Redis:
        aioredis = _load_redis()
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options: dict[str, Any] = {
            "max_connections": max_connections,
            "timeout": COMMAND_TIMEOUT_S,  # waiting for a free pooled connection
            "socket_connect_timeout": COMMAND_TIMEOUT_S,
            "socket_timeout": socket_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        try:
            from redis.maint_notifications import MaintNotificationsConfig
        except ImportError:  # redis-py < 7
            pass
        else:
            # As in RedisStreamAdapter: with them on, redis-py 8.x does not notice pooled
            # connections a restarted server closed (redis/redis-py#4252).
            options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
        try:
            pool = aioredis.BlockingConnectionPool.from_url(self._url, **options)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {self.where}: {exc}") from exc
        client: Redis = aioredis.Redis(connection_pool=pool)
        return client

    async def close(self) -> None:
        """Close the connections; leased messages stay pending until claimed; idempotent."""
        self._is_closed = True
        client, blocking = self._client, self._blocking
        self._client = self._blocking = None
        for each in (blocking, client):
            if each is not None:
                await each.aclose(close_connection_pool=True)

    def _check_open(self) -> Redis:
        if self._is_closed:
            raise StoreError("queue is closed")
        if self._client is None:
            raise StoreError("queue is not open")
        return self._client

    async def _call(self, action: str, command: Awaitable[T]) -> T:
        try:
            return await command
        except Exception as exc:
            raise self._error(exc, action) from exc

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        self._check_open()
        return await self._call(name, self._scripts[name](keys=keys, args=args))

    def _error(self, exc: BaseException, action: str) -> StoreError:
        """Wrap a redis-py error in a ``StoreError`` that says whether to retry."""
        return redis_error(exc, f"queue {action}", self.where)

    # -- publish and receive -----------------------------------------------------------------

    async def publish(self, queues: Sequence[str], envelope: Envelope) -> list[str]:
        """Enqueue one copy per queue in one MULTI/EXEC; returns once Redis applied it.

        Raises:
            ValidationError: a bad queue name or id, or data that is not JSON-able.
            StoreError: Redis failed (``retryable`` when it is unreachable).
        """
        validate_publish(queues, envelope)
        client = self._check_open()
        body = b"".join(
            (
                b'{"topic":',
                orjson.dumps(envelope.topic),
                b',"trace_id":',
                orjson.dumps(envelope.trace_id),
                b',"trace_parent":' + orjson.dumps(envelope.trace_parent)
                if envelope.trace_parent is not None
                else b"",
                b',"enqueued_at":',
                orjson.dumps(time.time()),
                b',"data":',
                encode_data(envelope.data),
                b"}",
            )
        )
        group = envelope.group_id or ""
        ids = [uuid.uuid4().hex for _ in queues]
        script = self._scripts["publish"]

        async def run() -> None:
            async with client.pipeline(transaction=True) as pipe:
                for id, name in zip(ids, queues, strict=True):
                    k = self.queue_keys(name)
                    await script(
                        keys=(k.stream, k.body, k.heads, k.waiting, k.seq),
                        args=(CONSUMER_GROUP, id, body, group),
                        client=pipe,
                    )
                await pipe.execute()

        await self._call("publish", run())
        return ids

    async def receive(
        self, queue: str, *, consumer: str, limit: int, lease: float
    ) -> list[Delivery]:
        """Lease up to ``limit`` messages: due retries, expired leases, then new entries."""
        if limit <= 0:
            return []
        if lease <= 0:
            raise ValueError(f"lease must be positive, not {lease!r}")
        self._check_open()
        self._pending.discard(queue)
        k = self.queue_keys(queue)
        name = self.consumer_name(consumer)
        deliveries: list[Delivery] = []
        last = self._housekept.get(queue)
        if last is None or time.monotonic() - last >= HOUSEKEEPING_S:
            rows = await self._housekeep(queue, name, limit)
            deliveries += await self._deliveries(queue, name, rows)
        for _ in range(MAX_POISON_ROUNDS):
            want = limit - len(deliveries)
            if want <= 0:
                break
            rows = await self._script(
                "receive",
                (k.stream, k.body, k.delayed, k.cursor),
                (CONSUMER_GROUP, name, max(1, round(lease * 1000)), want),
            )
            fresh = await self._deliveries(queue, name, rows)
            deliveries += fresh
            if len(fresh) == len(rows):  # no poison: a short page means nothing more is ready
                break
        if len(deliveries) >= limit:
            self._pending.add(queue)  # there may be more
        return deliveries

    async def _housekeep(self, queue: str, name: str, limit: int) -> list[Any]:
        """Take over the entries of dead local consumers; drop long-idle empty consumers."""
        client = self._check_open()
        k = self.queue_keys(queue)
        self._housekept[queue] = time.monotonic()
        try:
            consumers = await client.xinfo_consumers(k.stream, CONSUMER_GROUP)
        except Exception as exc:
            error = self._error(exc, "housekeeping")
            if not error.retryable:  # no stream or group yet: nothing to look after
                return []
            raise error from exc
        rows: list[Any] = []
        for info in consumers:
            other = _text(info.get("name", ""))
            if other == name:
                continue
            pending, idle_ms = int(info.get("pending", 0)), int(info.get("idle", 0))
            if pending and is_dead_local_process("|".join(other.split("|")[:5])):
                if len(rows) >= limit:
                    self._housekept.pop(queue, None)  # more to take over on the next call
                    continue
                taken = await self._script(
                    "take_over",
                    (k.stream, k.body),
                    (CONSUMER_GROUP, name, other, limit - len(rows)),
                )
                logger.info("queue %s: took over %d messages of dead %s", queue, len(taken), other)
                rows += taken
            elif not pending and (
                idle_ms > IDLE_CONSUMER_S * 1000
                or is_dead_local_process("|".join(other.split("|")[:5]))
            ):
                await self._call(
                    "housekeeping", client.xgroup_delconsumer(k.stream, CONSUMER_GROUP, other)
                )
        return rows

    async def _deliveries(self, queue: str, consumer: str, rows: list[Any]) -> list[Delivery]:
        """Decode the script's rows; dead-letter the ones that do not decode (poison)."""
        out: list[Delivery] = []
        for entry_id, id, group, att, count, body in rows:
            receipt = _Receipt(_text(entry_id), consumer, int(count), _text(group))
            message_id = _text(id)
            attempt = int(att) + int(count)
            try:
                decoded = orjson.loads(body)
                topic, trace_id = decoded["topic"], decoded["trace_id"]
                enqueued_at = float(decoded["enqueued_at"])
                if not isinstance(topic, str) or not isinstance(trace_id, str):
                    raise ValueError("topic and trace id must be strings")
                parent = decoded.get("trace_parent")
                envelope = Envelope(
                    topic,
                    decoded["data"],
                    trace_id,
                    receipt.group or None,
                    parent if isinstance(parent, str) else None,
                )
            except (ValueError, TypeError, KeyError) as exc:
                logger.warning("queue %s: dead-lettering undecodable message %s", queue, id)
                poison = Delivery(queue, message_id, Envelope("", None, ""), attempt, 0.0, receipt)
                await self.dead_letter(poison, error=f"cannot decode message: {exc!r}")
                continue
            out.append(Delivery(queue, message_id, envelope, attempt, enqueued_at, receipt))
        return out

    async def wait(self, queue: str, timeout: float) -> None:  # noqa: ASYNC109 (the contract)
        """Return when ``queue`` gets an undelivered entry or a retry is due, or after
        ``min(timeout, poll_interval)`` seconds."""
        self._check_open()
        if queue in self._pending or timeout <= 0:
            return
        k = self.queue_keys(queue)
        now_ms, due_ms, last, has_new = await self._script(
            "peek", (k.stream, k.delayed), (CONSUMER_GROUP,)
        )
        block_ms = min(timeout, self.poll_interval) * 1000
        if int(due_ms) >= 0:
            block_ms = min(block_ms, int(due_ms) - int(now_ms))
        if has_new or block_ms <= 0:
            return
        blocking = self._blocking
        if blocking is None:
            raise StoreError("queue is closed")
        await self._call(
            "wait", blocking.xread({k.stream: _text(last)}, count=1, block=max(1, int(block_ms)))
        )

    # -- settling a delivery -----------------------------------------------------------------

    @staticmethod
    def _receipt(delivery: Delivery) -> _Receipt:
        receipt = delivery.receipt
        if not isinstance(receipt, _Receipt):
            raise ValueError(f"not a delivery of RedisStreamsQueue: {delivery.message_id!r}")
        return receipt

    async def extend(self, delivery: Delivery, lease: float) -> bool:
        """Reset the entry's idle time (XCLAIM JUSTID); False when the lease was lost.

        The new lease is the claimers' lease again: ``lease`` is not stored.
        """
        r = self._receipt(delivery)
        k = self.queue_keys(delivery.queue)
        done = await self._script(
            "extend", (k.stream,), (CONSUMER_GROUP, r.consumer, r.entry_id, r.count)
        )
        return bool(done)

    async def ack(self, delivery: Delivery) -> None:
        """XACK and delete the message; nothing happens when the lease was lost."""
        r = self._receipt(delivery)
        k = self.queue_keys(delivery.queue)
        done = await self._script(
            "ack",
            (k.stream, k.body, k.heads, k.waiting),
            (CONSUMER_GROUP, r.consumer, r.entry_id, r.count, delivery.message_id, r.group),
        )
        if not done:
            logger.debug("ack of %s in %s: lease was lost", delivery.message_id, delivery.queue)

    async def retry(self, delivery: Delivery, *, delay: float, error: str) -> None:
        """Park the message until ``delay`` seconds from now (Redis clock), then redeliver."""
        r = self._receipt(delivery)
        k = self.queue_keys(delivery.queue)
        done = await self._script(
            "retry",
            (k.stream, k.delayed),
            (
                CONSUMER_GROUP,
                r.consumer,
                r.entry_id,
                r.count,
                delivery.message_id,
                r.group,
                delivery.attempt,
                max(0, round(delay * 1000)),
            ),
        )
        if not done:
            logger.debug("retry of %s in %s: lease was lost", delivery.message_id, delivery.queue)

    async def dead_letter(self, delivery: Delivery, *, error: str) -> None:
        """Move the message to the dead letters with ``error`` (nothing if the lease was lost)."""
        r = self._receipt(delivery)
        k = self.queue_keys(delivery.queue)
        failed_at = time.time()
        info = orjson.dumps({"error": error, "failed_at": failed_at, "attempts": delivery.attempt})
        done = await self._script(
            "dead_letter",
            (k.stream, k.heads, k.waiting, k.dead, k.deadinfo, k.deadgroup),
            (
                CONSUMER_GROUP,
                r.consumer,
                r.entry_id,
                r.count,
                delivery.message_id,
                r.group,
                info,
                round(failed_at * 1000),
            ),
        )
        if not done:
            logger.debug("dead letter of %s: lease was lost", delivery.message_id)

    # -- dead letters and stats --------------------------------------------------------------

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` dead letters of ``queue``, newest first."""
        client = self._check_open()
        if limit <= 0:
            return []
        k = self.queue_keys(queue)
        ids = [
            _text(id)
            for id in await self._call("dead_letters", client.zrevrange(k.dead, 0, limit - 1))
        ]
        if not ids:
            return []

        async def read() -> list[Any]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hmget(k.deadinfo, ids)
                pipe.hmget(k.deadgroup, ids)
                pipe.hmget(k.body, ids)
                result: list[Any] = await pipe.execute()
                return result

        infos, groups, bodies = await self._call("dead_letters", read())
        letters = []
        for id, info, group, body in zip(ids, infos, groups, bodies, strict=True):
            if info is None:  # replayed or discarded meanwhile
                continue
            meta = orjson.loads(info)
            try:
                decoded = orjson.loads(body)
                envelope = Envelope(
                    str(decoded["topic"]),
                    decoded["data"],
                    str(decoded["trace_id"]),
                    _text(group) if group else None,
                )
            except (ValueError, TypeError, KeyError):  # a poison message: show what was stored
                raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
                envelope = Envelope("", raw, "", _text(group) if group else None)
            letters.append(
                DeadLetter(
                    queue,
                    id,
                    envelope,
                    int(meta["attempts"]),
                    str(meta["error"]),
                    float(meta["failed_at"]),
                )
            )
        return letters

    async def replay(self, queue: str, message_id: str) -> bool:
        """Re-enqueue a dead letter at the end of its queue (or its group), attempts reset."""
        k = self.queue_keys(queue)
        done = await self._script(
            "replay",
            (k.stream, k.heads, k.waiting, k.seq, k.dead, k.deadinfo, k.deadgroup),
            (CONSUMER_GROUP, message_id),
        )
        return bool(done)

    async def discard(self, queue: str, message_id: str) -> bool:
        """Delete a dead letter for good; False if unknown."""
        k = self.queue_keys(queue)
        done = await self._script(
            "discard", (k.body, k.dead, k.deadinfo, k.deadgroup), (message_id,)
        )
        return bool(done)

    async def stats(self, queue: str) -> QueueStats:
        """Counts of ``queue``: FIFO-waiting messages count as ready, pending entries (expired
        leases too) as in flight, parked retries as delayed."""
        k = self.queue_keys(queue)
        ready, delayed, in_flight, dead = await self._script(
            "stats", (k.stream, k.delayed, k.waiting, k.dead), (CONSUMER_GROUP,)
        )
        return QueueStats(int(ready), int(delayed), int(in_flight), int(dead))
