"""``RedisStreamAdapter``: items in Redis; every instance gets every change through Redis pub/sub.

Key layout (``<prefix>`` defaults to ``surge``), per (stream, group)::

    <prefix>:{<stream>|<group>}:items   HASH    id -> item JSON (orjson bytes, with "id")
    <prefix>:{<stream>|<group>}:order   ZSET    id -> the group's seq when the item was created
    <prefix>:{<stream>|<group>}:seq     STRING  the group's change counter (INCR)
    <prefix>:{<stream>|<group>}:ver     HASH    id -> the item's version (seq of its last change)
    <prefix>:{<stream>|<group>}:hist    LIST    the group's history: "<seq> <expiry ms> <payload>"
    <prefix>:epoch                      STRING  the history's epoch (SET NX; lost data: a new one)
    <prefix>:expiry                     ZSET    ["<tag>", id, head] -> expiry (Redis ms), TTL only
    <prefix>:feed                       channel every change and ephemeral event, as JSON
    <prefix>:feed:barrier:<instance>    channel private to one adapter (see "Snapshots")

- The braces are a Redis Cluster hash tag: a group's keys live in one slot, so every Lua
  script touches one slot only (except for ``<prefix>:expiry``, see "TTL"). ``seq`` is therefore
  per (stream, group), which is what the contract orders by; a store-wide counter would put
  every write of every group on one key.
- Stream and group names are percent-encoded for ``%``, ``|``, ``{``, ``}``, ``:`` and the glob
  characters ``*?[]\\``: ``|`` then separates them unambiguously (stream ``a|b`` group ``c`` and
  stream ``a`` group ``b|c`` are different keys), the hash tag always ends at our ``}``, and a
  SCAN pattern can name a stream literally. The prefix may not contain braces or glob characters.
- Cluster-ready layout, single-endpoint client: the adapter talks to one server (or a proxy
  such as Envoy or a managed endpoint); it does not route by slot itself.
- Empty groups disappear (Redis drops an empty HASH or ZSET); their ``seq`` key stays so that
  ``seq`` never goes back.

Writes are Lua scripts, so each is atomic: ``set`` decides create-vs-update with HEXISTS, writes
the item, keeps the creation position (``ZADD NX``; a delete then a set goes last), bumps the
group's seq and PUBLISHes the change, all in one step: two instances racing on a new key get
exactly one ``create``. ``delete`` publishes nothing when the item does not exist.

Updates (``update(ops)``) are optimistic read + compare-and-set: one script reads the item and
its version, the ops are applied and the result validated *in Python* (the same code as every
store, so no cjson number or empty-array ambiguity, and the stream's pydantic schema can check
the result), then a second script writes only if the item's existence and version are still
what was read, bumping the version, all in the same step as ``set``. A lost race re-reads and
retries (with a little jittered backoff, up to ``CAS_ATTEMPTS``), so the update is atomic across
every instance and process: concurrent increments all count, concurrent appends all land.

TTL: ``<prefix>:expiry`` scores each expiring item by its expiry time, taken from Redis's own
clock (``TIME`` in the script: instances' clocks do not matter). Every adapter runs one
``ExpirySweeper`` task whose script pops the due members and deletes their items (publishing one
``delete`` each) in one atomic step, so exactly one instance deletes each expired item and every
instance feeds its delete once. Writes keep the index exact (``set`` without ``ttl`` and ``delete``
remove the member). This key is shared by all groups: with TTL in use the layout is no longer
single-slot per script (fine on one server or a proxy that does not split scripts).

Feed payload (one JSON object per message on ``<prefix>:feed``)::

    {"kind":"create"|"update"|"delete","seq":7,"stream":"todo","group":"inbox","id":"t1","item":{..}}
    {"kind":"update","seq":8,...,"item":{..},"ops":[{"type":"append",..}]}   an update(ops)
    {"kind":"event","seq":9,"stream":"todo","group":"inbox","id":null,"event":{"type":"typing",..}}
    {"kind":"control","control":{"type":"access","action":"revoke","where":{..},"origin":".."}}

History: every script that bumps a group's ``seq`` (set, update's compare-and-set, delete, the
expiry sweep, and ``send``, which is a script too) appends the published payload to the group's
``hist`` LIST in the same atomic step, prefixed with its seq and expiry time (Redis clock), trims
it to the stream's ``HistoryPolicy.size``, pops expired entries off its head and sets the LIST to
expire with its newest entry. A group's seq therefore counts exactly its history entries
(contiguous), so the history is complete after ``since`` iff its first entry is at most
``since + 1``; ``read_history`` checks that, and the contiguity, in Python. The sweep script gets
the policies of the deleting instance's streams as an argument. The epoch is read (or created,
``SET NX``) at ``open`` and again whenever the feed reconnects or a history read finds it changed
(a flushed or replaced Redis): offsets are never resumed across lost data. A flush that leaves
the connection up is noticed by the next history read.

``control`` messages (``surge.streams.control``: the server's ``reauthorize`` and ``revoke``)
ride the same channel, so they need no second subscription and keep the feed's order; they go to
the control sink (``set_control_sink``), never to the feed sink.

``ops`` is the ``Change.ops`` of an update that can be sent as a delta (``apply_update``), so
every instance, not only the writer's, can send patches to its delta subscribers.

The script splices the item's JSON into the payload as a string (no cjson round trip), so the
published item is byte-identical to the stored one.

Ordering: Redis runs scripts one at a time and all messages go through one channel, so every
instance sees every change in the same order, which is each group's ``seq`` order. Each adapter
has ONE pub/sub connection whose listener task hands messages to the sink in that order. Local
writes come back through Redis too, so the sink may be called *after* ``set`` returns (unlike the
memory and file stores).

Snapshots: ``get_group`` and ``get_item_snapshot`` read the items and the group's seq in one
script, then publish a token on this adapter's private barrier channel and wait (at most
``CATCH_UP_TIMEOUT_S``) until the listener sees it. Redis delivers a subscriber's messages in
publish order, so by then every change the snapshot reflects has been handed to the sink: the
hub never receives a change older than a sync it already sent.

Failures: commands are never retried automatically (a write whose reply was lost may have been
applied; a retried ``delete`` would then report that nothing existed). Connection errors and
timeouts (``socket_timeout`` of ``COMMAND_TIMEOUT_S``) raise ``StoreError(retryable=True)``, which
HTTP maps to 503. When the feed connection drops, the listener logs a warning, reconnects with
exponential backoff (capped at ``RECONNECT_MAX_S``) and then feeds ``Resync`` so the server
re-syncs its clients. An idle feed is PINGed every ``HEARTBEAT_S`` so that a half-open connection
is noticed too.

Durability is Redis's: a write is acknowledged once Redis applied it in memory; what survives a
Redis crash depends on its persistence settings (``appendonly``, ``appendfsync``).

``list_groups`` SCANs the database for the stream's ``items`` keys: O(number of keys in the
database) per call, in batches of ``SCAN_COUNT``. Fine for tools and admin pages; keep it off hot
paths, or give Surge its own database.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import re
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import orjson

from surge._redis import redis_error
from surge.errors import ConfigError, StoreError, ValidationError
from surge.streams.control import ControlMessage, ControlSink
from surge.streams.feed import (
    Change,
    ChangeKind,
    EphemeralEvent,
    FeedSink,
    GroupSnapshot,
    History,
    Resync,
)
from surge.streams.history import DEFAULT_POLICY, HistoryPolicy
from surge.streams.ops import ItemValidator, Updated, apply_update, check_if_version, check_ops
from surge.streams.stores._expiry import ExpirySweeper
from surge.streams.stores._items import check_keys as _check_keys
from surge.streams.stores._items import check_window as _check_window
from surge.streams.stores._items import decode_item as _decode
from surge.streams.stores._items import deliver as _deliver
from surge.streams.stores._items import encode_cursor as _cursor
from surge.streams.stores._items import encode_item as _encode

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.commands.core import AsyncScript

    from surge.streams.stores.redis_presence import RedisPresence

__all__ = [
    "CAS_ATTEMPTS",
    "CATCH_UP_TIMEOUT_S",
    "COMMAND_TIMEOUT_S",
    "HEARTBEAT_S",
    "RECONNECT_MAX_S",
    "SCAN_COUNT",
    "RedisStreamAdapter",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

COMMAND_TIMEOUT_S: Final = 2.0  # connect and reply timeout of every command
OPEN_TIMEOUT_S: Final = 5.0  # open() gives the feed subscription this long to be confirmed
RECONNECT_MIN_S: Final = 0.1
RECONNECT_MAX_S: Final = 2.0
HEARTBEAT_S: Final = 5.0  # an idle feed is PINGed this often; silent for 3x this: reconnect
CATCH_UP_TIMEOUT_S: Final = 2.0
SCAN_COUNT: Final = 1000
MAX_CONNECTIONS: Final = 64
CAS_ATTEMPTS: Final = 500  # an update losing this many races in a row fails (retryable)
SWEEP_BATCH: Final = 500

_ESCAPED: Final = "%|{}:*?[]\\"
_ESCAPE_TABLE: Final = {ord(c): f"%{ord(c):02X}" for c in _ESCAPED}
_UNESCAPE: Final = re.compile(r"%([0-9A-F]{2})")

# Reply prefixes after which the same command may succeed later.

# Appends a published payload to a group's history (see the module docstring).
_HISTORY: Final = """
local function hist_push(hkey, seq, payload, size, ttl)
  if size <= 0 then
    redis.call('DEL', hkey)
    return
  end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('RPUSH', hkey, string.format('%d %d ', seq, now + ttl) .. payload)
  local n = redis.call('LLEN', hkey)
  if n > size then
    redis.call('LTRIM', hkey, n - size, -1)
  end
  while true do
    local head = redis.call('LINDEX', hkey, 0)
    if not head then
      break
    end
    local due = tonumber(string.match(head, '^%d+ (%d+) '))
    if due ~= nil and due > now then
      break
    end
    redis.call('LPOP', hkey)
  end
  redis.call('PEXPIRE', hkey, ttl)
end
"""

# The write shared by set and the compare-and-set of update. KEYS: items, order, seq, ver,
# expiry, hist. ARGV: id, item JSON, payload head ("stream":..,"group":..,"id":..), feed channel,
# ttl ('' none, 'keep', or milliseconds), expiry member, history size, history ttl (ms).
# ``tail`` ends the feed payload ('' or ',"ops":[..]'). Returns {kind, seq}.
_WRITE: Final = (
    _HISTORY
    + """
local function write(tail)
  local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  local seq = redis.call('INCR', KEYS[3])
  redis.call('HSET', KEYS[4], ARGV[1], seq)
  local kind = 'update'
  if existed == 0 then
    kind = 'create'
    redis.call('ZADD', KEYS[2], 'NX', seq, ARGV[1])
  end
  if ARGV[5] == '' then
    redis.call('ZREM', KEYS[5], ARGV[6])
  elseif ARGV[5] ~= 'keep' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZADD', KEYS[5], now + tonumber(ARGV[5]), ARGV[6])
  end
  local payload = '{"kind":"' .. kind .. '","seq":' .. string.format('%d', seq)
    .. ',' .. ARGV[3] .. ',"item":' .. ARGV[2] .. tail .. '}'
  hist_push(KEYS[6], seq, payload, tonumber(ARGV[7]), tonumber(ARGV[8]))
  redis.call('PUBLISH', ARGV[4], payload)
  return {kind, seq}
end
"""
)

_SET: Final = _WRITE + "return write('')\n"

# As _SET, after checking ARGV[9] (expected existence, '1' or '0') and ARGV[10] (expected
# version); ARGV[11] is the payload's tail (the update's ops for subscribers, or '').
# Returns false when either changed since the read (the caller re-reads and retries).
_CAS: Final = (
    _WRITE
    + """
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1])
local ver = redis.call('HGET', KEYS[4], ARGV[1]) or '0'
if tostring(exists) ~= ARGV[9] or ver ~= ARGV[10] then
  return false
end
return write(ARGV[11])
"""
)

# KEYS: items, ver. ARGV: id. Returns {item JSON or nil, version or nil}.
_READ_VERSIONED: Final = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}
"""

# KEYS: items, order, seq, ver, expiry, hist. ARGV: id, payload head, feed channel, expiry
# member, history size, history ttl (ms). Returns {item JSON, seq} or nil.
_DELETE: Final = (
    _HISTORY
    + """
local item = redis.call('HGET', KEYS[1], ARGV[1])
if not item then
  return false
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[4])
local seq = redis.call('INCR', KEYS[3])
local payload = '{"kind":"delete","seq":' .. string.format('%d', seq)
  .. ',' .. ARGV[2] .. ',"item":' .. item .. '}'
hist_push(KEYS[6], seq, payload, tonumber(ARGV[5]), tonumber(ARGV[6]))
redis.call('PUBLISH', ARGV[3], payload)
return {item, seq}
"""
)

# KEYS: expiry. ARGV: batch size, feed channel, history policies (JSON {stream: [size, ttl ms]}),
# default history size, default history ttl (ms). Pops the due members and deletes their items
# as _DELETE does, atomically: one instance deletes each. Members are JSON [tag, id, head],
# written by this adapter. Returns {deleted count, Redis now (ms), next expiry (ms) or nil}.
_SWEEP: Final = (
    _HISTORY
    + """
local policies = cjson.decode(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local ok, m = pcall(cjson.decode, member)
  if ok and type(m) == 'table' and type(m[1]) == 'string' and type(m[2]) == 'string'
      and type(m[3]) == 'string' then
    local items = m[1] .. ':items'
    local item = redis.call('HGET', items, m[2])
    if item then
      redis.call('HDEL', items, m[2])
      redis.call('ZREM', m[1] .. ':order', m[2])
      redis.call('HDEL', m[1] .. ':ver', m[2])
      local seq = redis.call('INCR', m[1] .. ':seq')
      local payload = '{"kind":"delete","seq":' .. string.format('%d', seq)
        .. ',' .. m[3] .. ',"item":' .. item .. '}'
      local size, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
      local hok, head = pcall(cjson.decode, '{' .. m[3] .. '}')
      if hok and type(head) == 'table' and type(policies[head.stream]) == 'table' then
        size, ttl = policies[head.stream][1], policies[head.stream][2]
      end
      hist_push(m[1] .. ':hist', seq, payload, size, ttl)
      redis.call('PUBLISH', ARGV[2], payload)
    end
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, now, nxt[2] or false}
"""
)

# KEYS: items, order, seq. Returns {seq, {item JSON...}} in creation order. HMGET goes in chunks:
# unpack() of a whole large group would overflow Lua's C stack.
_GET_GROUP: Final = """
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
local items = {}
for i = 1, #ids, 1000 do
  local chunk = redis.call('HMGET', KEYS[1], unpack(ids, i, math.min(i + 999, #ids)))
  for j = 1, #chunk do
    if chunk[j] then
      items[#items + 1] = chunk[j]
    end
  end
end
return {redis.call('GET', KEYS[3]) or '0', items}
"""

# KEYS: items, order, seq. ARGV: the highest score wanted ('+inf', or '(N': below N), how many
# (-1: all). Returns {seq, {item JSON...}, {creation score...}}, newest first.
_GET_WINDOW: Final = """
local found
if tonumber(ARGV[2]) < 0 then
  found = redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[1], '-inf', 'WITHSCORES')
else
  found = redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[1], '-inf', 'WITHSCORES',
    'LIMIT', 0, tonumber(ARGV[2]))
end
local ids, scores = {}, {}
for i = 1, #found, 2 do
  ids[#ids + 1] = found[i]
  scores[#scores + 1] = found[i + 1]
end
local items, kept = {}, {}
for i = 1, #ids, 1000 do
  local last = math.min(i + 999, #ids)
  local chunk = redis.call('HMGET', KEYS[1], unpack(ids, i, last))
  for j = 1, #chunk do
    if chunk[j] then
      items[#items + 1] = chunk[j]
      kept[#kept + 1] = scores[i + j - 1]
    end
  end
end
return {redis.call('GET', KEYS[3]) or '0', items, kept}
"""

# KEYS: seq, hist. ARGV: payload head ("stream":..,"group":..,"id":..), event JSON, feed channel,
# history size, history ttl (ms). Returns the event's seq.
_SEND: Final = (
    _HISTORY
    + """
local seq = redis.call('INCR', KEYS[1])
local payload = '{"kind":"event","seq":' .. string.format('%d', seq) .. ',' .. ARGV[1]
  .. ',"event":' .. ARGV[2] .. '}'
hist_push(KEYS[2], seq, payload, tonumber(ARGV[4]), tonumber(ARGV[5]))
redis.call('PUBLISH', ARGV[3], payload)
return seq
"""
)

# KEYS: seq, hist. ARGV: since. Returns {seq, Redis now (ms), entries after since or false}:
# false when the LIST does not reach back to since + 1 (Python checks the entries themselves).
_READ_HISTORY: Final = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = tonumber(ARGV[1])
if since >= seq then
  return {seq, now, {}}
end
local head = redis.call('LINDEX', KEYS[2], 0)
if not head then
  return {seq, now, false}
end
local first = tonumber(string.match(head, '^(%d+) '))
if first == nil or first > since + 1 then
  return {seq, now, false}
end
return {seq, now, redis.call('LRANGE', KEYS[2], since + 1 - first, -1)}
"""

# KEYS: items, seq. ARGV: id. Returns {seq, item JSON or nil}.
_GET_ITEM_SNAPSHOT: Final = """
return {redis.call('GET', KEYS[2]) or '0', redis.call('HGET', KEYS[1], ARGV[1])}
"""


def _history_from(entries: Any, since: int, seq: int, now_ms: int) -> History | None:
    """The ``History`` in the read script's entries, or None unless they are exactly the
    unexpired messages ``since + 1 .. seq``."""
    if since > seq or not isinstance(entries, list):
        return None
    messages: list[Change | EphemeralEvent] = []
    expected = since + 1
    for entry in entries:
        try:
            raw_seq, raw_due, payload = bytes(entry).split(b" ", 2)
            message = _decode_feed(payload)
        except ValueError:
            return None
        if isinstance(message, _Control):
            return None  # never written to a history: not ours
        if int(raw_seq) != expected or message.seq != expected or int(raw_due) <= now_ms:
            return None  # a gap (data written without history) or an expired entry
        messages.append(message)
        expected += 1
    return History(messages, seq) if expected == seq + 1 else None


class _FeedLost(Exception):
    """The feed connection stopped answering."""


def _load_redis() -> ModuleType:
    try:
        import redis.asyncio
    except ImportError as exc:
        raise ConfigError(
            "RedisStreamAdapter needs the redis package: pip install 'surge[redis]'"
        ) from exc
    return redis.asyncio


def _escape(name: str) -> str:
    return name.translate(_ESCAPE_TABLE)


def _unescape(name: str) -> str:
    return _UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


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


def _head(stream: str, group: str, id: str) -> bytes:
    return b"".join(
        (
            b'"stream":',
            orjson.dumps(stream),
            b',"group":',
            orjson.dumps(group),
            b',"id":',
            orjson.dumps(id),
        )
    )


def _ttl_arg(ttl: float | None) -> str:
    """The script's ttl argument: '' for none, else whole milliseconds (at least 1)."""
    return "" if ttl is None else str(max(1, round(ttl * 1000)))


@dataclass(frozen=True, slots=True)
class _Control:
    """A control message read from the feed (for the control sink)."""

    message: ControlMessage


def _decode_feed(data: bytes) -> Change | EphemeralEvent | _Control:
    """Parse one feed payload; raises ValueError when it is not one of ours."""
    message = orjson.loads(data)
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    if message.get("kind") == "control":
        control = message.get("control")
        if not isinstance(control, dict):
            raise ValueError("bad control message")
        return _Control(control)
    kind, stream, group, id = (message.get(k) for k in ("kind", "stream", "group", "id"))
    if not isinstance(stream, str) or not isinstance(group, str):
        raise ValueError("stream and group must be strings")
    if kind == "event":
        event = message.get("event")
        seq = message.get("seq", 0)
        if not (id is None or isinstance(id, str)) or not isinstance(event, dict):
            raise ValueError("bad ephemeral event")
        if not isinstance(seq, int):
            raise ValueError("bad event seq")
        return EphemeralEvent(stream, group, id, event, seq)
    if kind not in ("create", "update", "delete"):
        raise ValueError(f"unknown kind {kind!r}")
    item, seq, ops = message.get("item"), message.get("seq"), message.get("ops")
    if not isinstance(id, str) or not isinstance(item, dict) or not isinstance(seq, int):
        raise ValueError("bad change")
    if ops is not None and (
        kind != "update" or not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops)
    ):
        raise ValueError("bad ops")
    return Change(kind, stream, group, id, item, seq, ops)


class RedisStreamAdapter:
    """A ``StreamAdapter`` on Redis, shared by every instance of an app (see the module doc)."""

    is_distributed = True  # Changes reach every process's sink.

    # Registered by open().
    _set_script: AsyncScript
    _cas_script: AsyncScript
    _read_versioned_script: AsyncScript
    _sweep_script: AsyncScript
    _delete_script: AsyncScript
    _group_script: AsyncScript
    _window_script: AsyncScript
    _item_script: AsyncScript
    _send_script: AsyncScript
    _history_script: AsyncScript

    def __init__(
        self,
        url: str | None = None,
        *,
        host: str = "localhost",
        port: int = 6379,
        db: int = 0,
        password: str | None = None,
        ssl: bool = False,
        prefix: str = "surge",
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """Configure (no I/O yet): ``url``, else ``$SURGE_REDIS_URL``, else host/port/db.

        ``password`` applies when the URL carries none. ``prefix`` starts every key and channel.

        Raises:
            ConfigError: redis-py is not installed, or ``prefix`` is not usable.
        """
        _load_redis()
        if not prefix or any(c in prefix for c in "{}*?[]\\"):
            raise ConfigError(f"Redis prefix {prefix!r} must be non-empty, without {{}}*?[]\\")
        if url is None:
            url = os.environ.get("SURGE_REDIS_URL") or None
        if url is None:
            netloc = f"[{host}]" if ":" in host else host
            url = f"{'rediss' if ssl else 'redis'}://{netloc}:{port}/{db}"
        self._url = url
        self._password = password
        self._max_connections = max_connections
        self.prefix = prefix
        self.where = _describe(url)
        """The server, for messages: the URL without credentials."""
        self.feed_channel = f"{prefix}:feed"
        """The pub/sub channel carrying every change and ephemeral event."""
        self.expiry_key = f"{prefix}:expiry"
        """The ZSET of expiring items, scored by their expiry time (Redis clock, ms)."""
        self._sweeper: ExpirySweeper | None = None
        self._barrier_channel = f"{prefix}:feed:barrier:{uuid.uuid4().hex}"
        self._barrier_channel_bytes = self._barrier_channel.encode()
        self._client: Redis | None = None
        self._sink: FeedSink | None = None
        self._control_sink: ControlSink | None = None
        self._listener: asyncio.Task[None] | None = None
        self._feed_ready: asyncio.Event | None = None
        self._barriers: dict[int, asyncio.Future[None]] = {}
        self._tokens = itertools.count(1)
        self._is_open = False
        self._is_closed = False
        self._close_task: asyncio.Future[None] | None = None
        self.feed_reconnects = 0
        """How often the feed subscription came back after a loss (metrics)."""
        self.epoch_key = f"{prefix}:epoch"
        """The STRING naming the history's epoch (created with SET NX)."""
        self.epoch = ""
        """Names the history (docs/protocol.md section 2); read by ``open``."""
        self._policies: dict[str, HistoryPolicy] = {}
        self._policies_arg = b"{}"

    @property
    def is_ready(self) -> bool:
        """True while the feed subscription is confirmed: changes reach this instance's
        subscribers (the server's ``/readyz`` reads it)."""
        ready = self._feed_ready
        return ready is not None and ready.is_set() and not self._is_closed

    @property
    def not_ready_reason(self) -> str:
        """Why ``is_ready`` is False, for ``/readyz``."""
        if self._is_closed:
            return "storage closed"
        return f"Redis feed at {self.where} not connected (reconnecting)"

    def configure_history(self, stream: str, policy: HistoryPolicy) -> None:
        """Keep ``policy``'s history for every group of ``stream`` (default ``HistoryPolicy()``)."""
        self._policies[stream] = policy
        self._policies_arg = orjson.dumps(
            {name: [p.size, p.ttl_ms] for name, p in self._policies.items()}
        )

    def _policy_args(self, stream: str) -> list[str]:
        policy = self._policies.get(stream, DEFAULT_POLICY)
        return [str(policy.size), str(policy.ttl_ms)]

    def history_key(self, stream: str, group: str) -> str:
        """The ``hist`` LIST of a group (same hash tag)."""
        return f"{self.prefix}:{{{_escape(stream)}|{_escape(group)}}}:hist"

    async def _refresh_epoch(self, client: Redis) -> str:
        """Read the epoch, creating it when missing (a new or flushed Redis)."""
        await client.set(self.epoch_key, uuid.uuid4().hex[:12], nx=True)
        value = await client.get(self.epoch_key)
        epoch = value.decode() if isinstance(value, bytes) else str(value)
        if self.epoch and epoch != self.epoch:
            logger.warning("Redis at %s has a new history epoch: its data was lost", self.where)
        self.epoch = epoch
        return epoch

    def group_keys(self, stream: str, group: str) -> tuple[str, str, str]:
        """The ``items``, ``order`` and ``seq`` keys of a group (one hash tag, one slot)."""
        tag = f"{self.prefix}:{{{_escape(stream)}|{_escape(group)}}}"
        return f"{tag}:items", f"{tag}:order", f"{tag}:seq"

    def version_key(self, stream: str, group: str) -> str:
        """The ``ver`` HASH of a group: id -> the item's version (same hash tag)."""
        return f"{self.prefix}:{{{_escape(stream)}|{_escape(group)}}}:ver"

    def group_tag(self, stream: str, group: str) -> str:
        """The hash-tagged prefix of a group's keys, ``<prefix>:{<stream>|<group>}``."""
        return f"{self.prefix}:{{{_escape(stream)}|{_escape(group)}}}"

    def presence_backend(self, timeout: float) -> RedisPresence:
        """Presence member sets in this Redis, shared by every instance (``redis_presence``).

        ``timeout``: a dead instance's members are removed this many seconds after its last
        heartbeat. Usable once the adapter is open (it shares the connection pool).
        """
        from surge.streams.stores.redis_presence import RedisPresence

        return RedisPresence(
            self._check_open,
            prefix=self.prefix,
            group_tag=self.group_tag,
            feed_channel=self.feed_channel,
            where=self.where,
            timeout=timeout,
        )

    def _write_keys(self, stream: str, group: str) -> list[str]:
        return [
            *self.group_keys(stream, group),
            self.version_key(stream, group),
            self.expiry_key,
            self.history_key(stream, group),
        ]

    def _expiry_member(self, stream: str, group: str, id: str, head: bytes) -> bytes:
        tag = f"{self.prefix}:{{{_escape(stream)}|{_escape(group)}}}"
        return orjson.dumps([tag, id, head.decode()])

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, sink: FeedSink) -> None:
        """Connect, check the server with PING and subscribe to the feed before returning.

        Raises:
            StoreError: Redis cannot be reached (``retryable=True``) or refuses the credentials.
        """
        if self._is_open or self._is_closed:
            raise StoreError("store was already opened")
        self._is_open = True
        aioredis = _load_redis()
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options: dict[str, Any] = {
            "max_connections": self._max_connections,
            "timeout": COMMAND_TIMEOUT_S,  # waiting for a free pooled connection
            "socket_connect_timeout": COMMAND_TIMEOUT_S,
            "socket_timeout": COMMAND_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 0),
        }
        if self._password is not None:
            options["password"] = self._password
        try:
            from redis.maint_notifications import MaintNotificationsConfig
        except ImportError:  # redis-py < 7: no maintenance notifications, nothing to turn off
            pass
        else:
            # With them on ("auto" under RESP3), redis-py 8.x skips its check for pooled
            # connections the server closed, so every idle connection fails one command after
            # a Redis restart (redis/redis-py#4252). Surge does not use them.
            options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
        try:
            pool = aioredis.BlockingConnectionPool.from_url(self._url, **options)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {self.where}: {exc}") from exc
        client: Redis = aioredis.Redis(connection_pool=pool)
        self._client = client
        self._sink = sink
        self._feed_ready = asyncio.Event()
        try:
            try:
                await client.ping()
            except Exception as exc:
                error = self._error(exc, "PING")
                if not error.retryable:
                    raise error from exc
                raise StoreError(
                    f"cannot reach Redis at {self.where}: {exc}", retryable=True
                ) from exc
            self._set_script = client.register_script(_SET)
            self._cas_script = client.register_script(_CAS)
            self._read_versioned_script = client.register_script(_READ_VERSIONED)
            self._sweep_script = client.register_script(_SWEEP)
            self._delete_script = client.register_script(_DELETE)
            self._group_script = client.register_script(_GET_GROUP)
            self._window_script = client.register_script(_GET_WINDOW)
            self._item_script = client.register_script(_GET_ITEM_SNAPSHOT)
            self._send_script = client.register_script(_SEND)
            self._history_script = client.register_script(_READ_HISTORY)
            try:
                await self._refresh_epoch(client)
            except Exception as exc:
                raise self._error(exc, "epoch") from exc
            self._listener = asyncio.create_task(self._run_feed(), name="surge-redis-feed")
            try:
                async with asyncio.timeout(OPEN_TIMEOUT_S):
                    await self._feed_ready.wait()
            except TimeoutError as exc:
                raise StoreError(
                    f"Redis at {self.where} did not confirm the feed subscription",
                    retryable=True,
                ) from exc
            # What expired while no instance ran is gone before open returns (the deletes reach
            # every instance through the feed); then the sweeper takes over.
            await self._sweep()
            self._sweeper = ExpirySweeper(self._sweep, name="surge-redis-expiry")
            self._sweeper.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the feed listener and close every connection; idempotent."""
        self._is_closed = True
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._shutdown())
        # Shielded so that a cancelled caller cannot leave the listener or the pool behind.
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        if self._sweeper is not None:
            await self._sweeper.stop()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.wait([listener])  # waits without raising its CancelledError
        self._release_barriers()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    # -- writes ------------------------------------------------------------------------------

    async def set(
        self, stream: str, group: str, id: str, item: dict[str, Any], *, ttl: float | None = None
    ) -> Change:
        """Create or replace the item atomically; returns once Redis applied and published it.

        ``ttl``: seconds until it expires (Redis's clock); None clears any expiry.
        """
        self._check_open()
        _check_keys(stream, group, id)
        data = _encode(id, item)
        head = _head(stream, group, id)
        args: list[bytes | str] = [
            id,
            data,
            head,
            self.feed_channel,
            _ttl_arg(ttl),
            self._expiry_member(stream, group, id, head),
            *self._policy_args(stream),
        ]
        reply = await self._call("set", self._set_script(self._write_keys(stream, group), args))
        change = self._change_from(reply, stream, group, id, data)
        if change is None:
            raise StoreError(f"set: unexpected reply from Redis: {reply!r}")
        self._notify_expiry(ttl)
        return change

    async def update(
        self,
        stream: str,
        group: str,
        id: str,
        ops: list[dict[str, Any]],
        *,
        if_version: int | None = None,
        ttl: float | None = None,
        default_ttl: float | None = None,
        validate: ItemValidator | None = None,
    ) -> Updated:
        """Apply ``ops`` by read + compare-and-set, retried on a lost race (see the module doc)."""
        self._check_open()
        _check_keys(stream, group, id)
        ops = check_ops(ops)
        keys = self._write_keys(stream, group)
        head = _head(stream, group, id)
        member = self._expiry_member(stream, group, id, head)
        read_keys = [keys[0], keys[3]]
        policy = self._policy_args(stream)
        for attempt in range(CAS_ATTEMPTS):
            if attempt > 2:  # contended: spread the retries out
                await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))
            reply = await self._call("update", self._read_versioned_script(read_keys, [id]))
            if not isinstance(reply, list) or len(reply) != 2:
                raise StoreError(f"update: unexpected reply from Redis: {reply!r}")
            raw, raw_version = reply
            version = None if raw is None else int(raw_version or 0)
            check_if_version(if_version, version)
            old = None if raw is None else _decode(raw)
            new, delta = apply_update(None if raw is None else _decode(raw), ops, id, validate)
            data = _encode(id, new)
            tail = b"" if delta is None else b',"ops":' + orjson.dumps(delta)
            if ttl is not None:
                ttl_arg = _ttl_arg(ttl)
            elif raw is not None:
                ttl_arg = "keep"
            else:
                ttl_arg = _ttl_arg(default_ttl)
            args: list[bytes | str] = [
                id,
                data,
                head,
                self.feed_channel,
                ttl_arg,
                member,
                *policy,
                *("0" if raw is None else "1", "0" if raw is None else str(version), tail),
            ]
            reply = await self._call("update", self._cas_script(keys, args))
            if reply is None:
                continue  # another write got in between: read again
            change = self._change_from(reply, stream, group, id, data, delta)
            if change is None:
                raise StoreError(f"update: unexpected reply from Redis: {reply!r}")
            self._notify_expiry(ttl if ttl is not None else default_ttl if raw is None else None)
            return Updated(old, change)
        raise StoreError(
            f"update of {id!r} lost {CAS_ATTEMPTS} races to other writers in a row", retryable=True
        )

    @staticmethod
    def _change_from(
        reply: Any,
        stream: str,
        group: str,
        id: str,
        data: bytes,
        ops: list[dict[str, Any]] | None = None,
    ) -> Change | None:
        if not isinstance(reply, list) or len(reply) != 2:
            return None
        kind: ChangeKind = "create" if reply[0] == b"create" else "update"
        return Change(kind, stream, group, id, _decode(data), int(reply[1]), ops)

    def _notify_expiry(self, ttl: float | None) -> None:
        if ttl is not None and self._sweeper is not None:
            self._sweeper.notify(ttl)

    async def _sweep(self) -> float | None:
        """Delete due items (one script, atomic); return seconds until the next expiry."""
        self._check_open()
        default = [DEFAULT_POLICY.size, DEFAULT_POLICY.ttl_ms]
        args: list[bytes | str | int] = [
            SWEEP_BATCH,
            self.feed_channel,
            self._policies_arg,
            *default,
        ]
        reply = await self._call("sweep", self._sweep_script([self.expiry_key], args))
        if not isinstance(reply, list) or len(reply) != 3:
            raise StoreError(f"sweep: unexpected reply from Redis: {reply!r}")
        deleted, now_ms, next_ms = reply
        if int(deleted) >= SWEEP_BATCH:
            return 0.0
        if next_ms is None:
            return None
        return max(0.0, (float(next_ms) - int(now_ms)) / 1000)

    async def delete(self, stream: str, group: str, id: str) -> Change | None:
        """Remove the item; returns the ``delete`` change, or None (nothing published)."""
        self._check_open()
        _check_keys(stream, group, id)
        head = _head(stream, group, id)
        member = self._expiry_member(stream, group, id, head)
        args: list[bytes | str] = [id, head, self.feed_channel, member, *self._policy_args(stream)]
        keys = self._write_keys(stream, group)
        reply = await self._call("delete", self._delete_script(keys, args))
        if reply is None:
            return None
        if not isinstance(reply, list) or len(reply) != 2:
            raise StoreError(f"delete: unexpected reply from Redis: {reply!r}")
        return Change("delete", stream, group, id, _decode(reply[0]), int(reply[1]))

    def set_control_sink(self, sink: ControlSink | None) -> None:
        """Deliver the feed's control messages (every instance's, this one's too) to ``sink``."""
        self._control_sink = sink

    async def publish_control(self, message: ControlMessage) -> None:
        """Publish a control message to every instance's control sink.

        Raises:
            StoreError: Redis is unreachable (retryable) or the adapter is not open.
        """
        client = self._check_open()
        payload = orjson.dumps({"kind": "control", "control": message})
        await self._call("publish_control", client.publish(self.feed_channel, payload))

    async def send(self, stream: str, group: str, id: str | None, event: dict[str, Any]) -> None:
        """Publish an ephemeral event to every instance's sink with the group's next ``seq``,
        keeping it in the group's history (one script)."""
        self._check_open()
        _check_keys(stream, group, id)
        try:
            data = orjson.dumps(event)
            head = orjson.dumps({"stream": stream, "group": group, "id": id})[1:-1]
        except orjson.JSONEncodeError as exc:
            raise ValidationError(
                f"event is not JSON-serialisable: {exc}",
                [{"loc": ["event"], "msg": str(exc), "type": "json_invalid"}],
            ) from exc
        _, _, seq_key = self.group_keys(stream, group)
        keys = [seq_key, self.history_key(stream, group)]
        args: list[bytes | str] = [head, data, self.feed_channel, *self._policy_args(stream)]
        await self._call("send", self._send_script(keys, args))

    async def read_history(self, stream: str, group: str, since: int) -> History | None:
        """The group's messages after ``since``, or None when they are not all kept.

        Returns only after the feed has delivered every message up to the returned ``seq``.
        """
        client = self._check_open()
        _check_keys(stream, group, None)
        epoch = self.epoch
        try:
            if await self._refresh_epoch(client) != epoch:
                return None  # the data behind the offsets is gone
        except Exception as exc:
            raise self._error(exc, "read_history") from exc
        _, _, seq_key = self.group_keys(stream, group)
        keys = [seq_key, self.history_key(stream, group)]
        reply = await self._call("read_history", self._history_script(keys, [since]))
        if not isinstance(reply, list) or len(reply) != 3:
            raise StoreError(f"read_history: unexpected reply from Redis: {reply!r}")
        seq, now_ms, entries = int(reply[0]), int(reply[1]), reply[2]
        history = _history_from(entries, since, seq, now_ms)
        await self._catch_up()
        return history

    # -- reads -------------------------------------------------------------------------------

    async def get(self, stream: str, group: str, id: str) -> dict[str, Any] | None:
        """Return the item or None."""
        client = self._check_open()
        _check_keys(stream, group, id)
        items_key = self.group_keys(stream, group)[0]
        data = await self._call("get", client.hget(items_key, id))
        if data is None:
            return None
        return _decode(data if isinstance(data, bytes) else data.encode())

    async def get_group(
        self, stream: str, group: str, *, limit: int | None = None, before: str | None = None
    ) -> GroupSnapshot:
        """Return the group's items in creation order, read atomically with the group's ``seq``:
        all of them, or the newest ``limit`` (created before the cursor ``before``) with
        ``more`` (the ``order`` ZSET read backwards from the cursor: O(log n + limit)).

        Returns only after the feed has delivered every change the snapshot reflects.
        """
        self._check_open()
        _check_keys(stream, group, None)
        count, end = _check_window(limit, before)
        keys = self.group_keys(stream, group)
        if count is None and end is None:
            reply = await self._call("get_group", self._group_script(keys))
            if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[1], list):
                raise StoreError(f"get_group: unexpected reply from Redis: {reply!r}")
            snapshot = GroupSnapshot([_decode(data) for data in reply[1]], int(reply[0]))
        else:
            top = "+inf" if end is None else f"({end}"
            args: list[str | int] = [top, -1 if count is None else count + 1]
            reply = await self._call("get_group", self._window_script(keys, args))
            if (
                not isinstance(reply, list)
                or len(reply) != 3
                or not isinstance(reply[1], list)
                or not isinstance(reply[2], list)
            ):
                raise StoreError(f"get_group: unexpected reply from Redis: {reply!r}")
            rows, scores = reply[1], reply[2]
            has_more = count is not None and len(rows) > count
            if has_more:
                rows, scores = rows[:count], scores[:count]
            more = _cursor(int(float(scores[-1]))) if has_more else None
            items = [_decode(data) for data in reversed(rows)]
            snapshot = GroupSnapshot(items, int(reply[0]), more)
        await self._catch_up()
        return snapshot

    async def get_item_snapshot(self, stream: str, group: str, id: str) -> GroupSnapshot:
        """Return ``[item]`` or ``[]`` read atomically with the group's ``seq``."""
        self._check_open()
        _check_keys(stream, group, id)
        items_key, _, seq_key = self.group_keys(stream, group)
        reply = await self._call("get_item_snapshot", self._item_script([items_key, seq_key], [id]))
        if not isinstance(reply, list) or len(reply) != 2:
            raise StoreError(f"get_item_snapshot: unexpected reply from Redis: {reply!r}")
        items = [] if reply[1] is None else [_decode(reply[1])]
        snapshot = GroupSnapshot(items, int(reply[0]))
        await self._catch_up()
        return snapshot

    async def list_groups(self, stream: str) -> list[str]:
        """Return the sorted ids of the groups of ``stream`` holding items (SCANs the database)."""
        client = self._check_open()
        _check_keys(stream, "", None)
        head = f"{self.prefix}:{{{_escape(stream)}|"
        tail = "}:items"
        groups: set[str] = set()
        try:
            async for key in client.scan_iter(match=f"{head}*{tail}", count=SCAN_COUNT):
                name = key.decode() if isinstance(key, bytes) else str(key)
                groups.add(_unescape(name[len(head) : -len(tail)]))
        except Exception as exc:
            raise self._error(exc, "list_groups") from exc
        return sorted(groups)

    async def _catch_up(self) -> None:
        """Wait until the feed has delivered everything published before this call."""
        ready = self._feed_ready
        client = self._client
        if ready is None or not ready.is_set() or client is None:
            return  # the feed is down: a Resync follows its reconnection anyway
        token = next(self._tokens)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barriers[token] = waiter
        try:
            receivers = await self._call(
                "catch-up", client.publish(self._barrier_channel, str(token))
            )
            if receivers:
                async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
                    await waiter
        except TimeoutError:
            logger.warning("Redis feed at %s is lagging: returning a snapshot anyway", self.where)
        finally:
            self._barriers.pop(token, None)

    def _release_barriers(self) -> None:
        barriers, self._barriers = self._barriers, {}
        for waiter in barriers.values():
            if not waiter.done():
                waiter.set_result(None)

    # -- commands ----------------------------------------------------------------------------

    def _check_open(self) -> Redis:
        if self._is_closed:
            raise StoreError("store is closed")
        if self._client is None or self._feed_ready is None:
            raise StoreError("store is not open")
        return self._client

    async def _call(self, action: str, command: Awaitable[T]) -> T:
        try:
            return await command
        except Exception as exc:
            raise self._error(exc, action) from exc

    def _error(self, exc: BaseException, action: str) -> StoreError:
        """Wrap a redis-py error in a ``StoreError`` that says whether to retry."""
        return redis_error(exc, action, self.where)

    # -- feed --------------------------------------------------------------------------------

    async def _run_feed(self) -> None:
        """The listener: follow the feed forever, reconnecting with backoff; never dies."""
        delay = RECONNECT_MIN_S
        has_connected = False  # a later (re)subscription may have missed messages
        is_lost = False  # warn once per outage, not once per attempt
        while True:
            try:
                client = self._client
                if client is None:
                    return
                pubsub = client.pubsub()
                try:
                    await self._subscribe(pubsub, is_reconnect=has_connected)
                    if is_lost:
                        logger.info("Redis feed at %s is back; re-syncing clients", self.where)
                    has_connected, is_lost, delay = True, False, RECONNECT_MIN_S
                    await self._follow(pubsub)
                finally:
                    if self._feed_ready is not None:
                        self._feed_ready.clear()
                    self._release_barriers()
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                from redis import exceptions as rex

                expected = isinstance(
                    exc, rex.ConnectionError | rex.TimeoutError | OSError | _FeedLost
                )
                if not expected:
                    logger.exception("Redis feed listener failed; restarting it")
                elif not is_lost:
                    logger.warning(
                        "Redis feed at %s lost (%s); reconnecting",
                        self.where,
                        str(exc) or type(exc).__name__,
                    )
                else:
                    logger.debug("Redis feed at %s still down: %s", self.where, exc)
                is_lost = is_lost or expected
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _subscribe(self, pubsub: PubSub, *, is_reconnect: bool) -> None:
        await pubsub.subscribe(self.feed_channel, self._barrier_channel)
        confirmed = 0
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            while confirmed < 2:
                message = await pubsub.get_message(timeout=COMMAND_TIMEOUT_S)
                if message is None:
                    continue
                if message["type"] != "subscribe":
                    self._on_message(message)
                    continue
                confirmed += 1
                if confirmed == 1 and is_reconnect:
                    self.feed_reconnects += 1
                    # Messages may have been published while we were away, and the data may
                    # be gone (a restarted Redis without persistence): a new epoch then.
                    if self._client is not None:
                        await self._refresh_epoch(self._client)
                    sink = self._sink
                    if sink is not None:
                        _deliver(sink, Resync("redis feed reconnected"))
        if self._feed_ready is not None:
            self._feed_ready.set()

    async def _follow(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        while True:
            message = await pubsub.get_message(timeout=HEARTBEAT_S)
            now = loop.time()
            if message is not None:
                last_heard = now
                self._on_message(message)
            elif now - last_heard >= 3 * HEARTBEAT_S:
                raise _FeedLost(f"no reply to PING for {now - last_heard:.0f} s")
            else:
                await pubsub.ping()

    def _on_message(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        if message.get("type") != "message" or not isinstance(data, bytes):
            return  # pong, (un)subscribe confirmations
        if message.get("channel") == self._barrier_channel_bytes:
            try:
                waiter = self._barriers.pop(int(data))
            except (KeyError, ValueError):
                return  # a token whose caller already gave up
            if not waiter.done():
                waiter.set_result(None)
            return
        sink = self._sink
        if sink is None:
            return
        try:
            feed_message = _decode_feed(data)
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            logger.warning("ignoring a malformed message on %s: %s", self.feed_channel, exc)
            return
        if isinstance(feed_message, _Control):
            control = self._control_sink
            if control is not None:
                try:
                    control(feed_message.message)
                except Exception:
                    logger.exception("the control sink raised; the feed goes on")
            return
        _deliver(sink, feed_message)
