"""What only the Redis store does: key layout, the shared feed between instances, outages.

The contract suite and the model test also run on Redis (see ``conftest.ADAPTER_FACTORIES``).
Tests that kill Redis use a private ``redis-server`` on a free port, never the shared one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from conftest import require_component
from redis_server import REDIS_TEST_URL, PrivateRedis, drop_redis_keys, free_port, redis_is_up
from surge.errors import ConfigError, StoreError
from surge.streams.feed import Change, EphemeralEvent, FeedMessage, Resync
from surge.streams.stores import redis as redis_store
from surge.streams.stores.redis import RedisStreamAdapter

pytestmark = pytest.mark.timeout(60)

Opener = Callable[..., Awaitable[tuple[RedisStreamAdapter, list[FeedMessage]]]]


async def wait_until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)


def changes(feed: list[FeedMessage]) -> list[Change]:
    return [m for m in feed if isinstance(m, Change)]


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix private to the test; its keys are deleted at teardown."""
    require_component(redis_is_up(), f"no Redis server answers at {REDIS_TEST_URL}")
    unique = f"surge-test-{uuid.uuid4().hex}"
    yield unique
    drop_redis_keys(unique)


@pytest.fixture
async def raw(prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client on the test server, to look at keys and channels directly."""
    client = aioredis.Redis.from_url(REDIS_TEST_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def open_adapter(prefix: str) -> AsyncIterator[Opener]:
    """Open adapters ("instances") with recording sinks; all closed at teardown."""
    opened: list[RedisStreamAdapter] = []

    async def open_one(
        url: str = REDIS_TEST_URL, *, key_prefix: str = prefix
    ) -> tuple[RedisStreamAdapter, list[FeedMessage]]:
        feed: list[FeedMessage] = []
        adapter = RedisStreamAdapter(url, prefix=key_prefix)
        await adapter.open(feed.append)
        opened.append(adapter)
        return adapter, feed

    yield open_one
    for adapter in opened:
        await adapter.close()


# -- key layout -------------------------------------------------------------------------------


async def test_a_group_is_three_keys_sharing_one_hash_tag(
    open_adapter: Opener, raw: aioredis.Redis, prefix: str
) -> None:
    adapter, _ = await open_adapter()
    await adapter.set("todo", "inbox", "t1", {"title": "milk"})
    await adapter.set("todo", "inbox", "t2", {})
    await adapter.set("todo", "inbox", "t1", {"title": "bread"})

    items, order, seq = (f"{prefix}:{{todo|inbox}}:{part}" for part in ("items", "order", "seq"))
    assert adapter.group_keys("todo", "inbox") == (items, order, seq)
    assert await raw.hgetall(items) == {
        b"t1": orjson.dumps({"title": "bread", "id": "t1"}),
        b"t2": b'{"id":"t2"}',
    }
    assert await raw.zrange(order, 0, -1, withscores=True) == [(b"t1", 1.0), (b"t2", 2.0)]
    assert await raw.get(seq) == b"3"
    assert len({key_slot(key.encode()) for key in (items, order, seq)}) == 1


async def test_versions_and_expiries_have_their_own_keys_kept_exact_by_every_write(
    open_adapter: Opener, raw: aioredis.Redis
) -> None:
    adapter, _ = await open_adapter()
    ver = adapter.version_key("todo", "inbox")
    created = await adapter.set("todo", "inbox", "t1", {}, ttl=3600)
    assert await raw.hget(ver, "t1") == str(created.seq).encode()
    assert await raw.zcard(adapter.expiry_key) == 1
    # Scored by Redis's clock, in milliseconds.
    (seconds, _micros) = await raw.time()
    scored: list[Any] = await raw.zrange(adapter.expiry_key, 0, -1, withscores=True)
    assert abs(float(scored[0][1]) - (seconds + 3600) * 1000) < 60_000

    updated = await adapter.update(
        "todo", "inbox", "t1", [{"type": "set", "path": "a", "value": 1}]
    )
    assert await raw.zcard(adapter.expiry_key) == 1  # an update without ttl keeps the expiry
    assert await raw.hget(ver, "t1") == str(updated.change.seq).encode()
    await adapter.set("todo", "inbox", "t1", {})
    assert await raw.zcard(adapter.expiry_key) == 0  # a set without ttl clears it
    await adapter.set("todo", "inbox", "t2", {}, ttl=3600)
    await adapter.delete("todo", "inbox", "t2")
    assert await raw.zcard(adapter.expiry_key) == 0
    assert await raw.hget(ver, "t2") is None
    assert key_slot(ver.encode()) == key_slot(adapter.group_keys("todo", "inbox")[0].encode())


PAIRS = [
    ("a|b", "c"),
    ("a", "b|c"),
    ("a%7Cb", "c"),
    ("a:b", "c"),
    ("a", "b:c"),
    ("{a}", "b"),
    ("a", "}b{"),
    ("*", "x"),
    ("a*", "x"),
    ("a?", "x"),
    ("[a]", "x"),
    ("a\\", "x"),
]


async def test_escaping_never_maps_two_stream_group_pairs_to_one_key(
    open_adapter: Opener, prefix: str
) -> None:
    adapter, _ = await open_adapter()
    for stream, group in PAIRS:
        await adapter.set(stream, group, "x", {"pair": [stream, group]})

    assert adapter.group_keys("a|b", "c")[0] == f"{prefix}:{{a%7Cb|c}}:items"
    assert len({adapter.group_keys(s, g) for s, g in PAIRS}) == len(PAIRS)
    for stream, group in PAIRS:
        assert await adapter.get(stream, group, "x") == {"pair": [stream, group], "id": "x"}
        # list_groups' SCAN pattern names the stream literally: "*" or "a?" match nothing else.
        assert await adapter.list_groups(stream) == sorted(g for s, g in PAIRS if s == stream)
        slots = {key_slot(key.encode()) for key in adapter.group_keys(stream, group)}
        assert len(slots) == 1


def test_a_prefix_that_would_break_the_hash_tag_or_scan_is_refused() -> None:
    for bad in ["", "a{b", "a}b", "a*", "a?", "a[b]", "a\\b"]:
        with pytest.raises(ConfigError):
            RedisStreamAdapter(prefix=bad)


def test_the_url_comes_from_the_argument_then_the_environment_then_host_and_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SURGE_REDIS_URL", "redis://:secret@10.0.0.7:6390/3")
    assert RedisStreamAdapter().where == "redis://10.0.0.7:6390/3"
    assert RedisStreamAdapter("redis://h:1/2").where == "redis://h:1/2"
    monkeypatch.delenv("SURGE_REDIS_URL")
    assert RedisStreamAdapter(host="cache", port=7000, db=2).where == "redis://cache:7000/2"
    assert RedisStreamAdapter(host="::1", ssl=True).where == "rediss://[::1]:6379/0"


# -- the feed ---------------------------------------------------------------------------------


async def test_published_changes_carry_the_stored_item_json_byte_for_byte(
    open_adapter: Opener, raw: aioredis.Redis
) -> None:
    adapter, _ = await open_adapter()
    pubsub = raw.pubsub()
    await pubsub.subscribe(adapter.feed_channel)
    messages: list[bytes] = []

    async def collect(n: int) -> None:
        async with asyncio.timeout(5):
            while len(messages) < n:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    messages.append(message["data"])

    try:
        await collect(0)
        item = {"b": 1.5, "a": 'ünï "q" 🎉', "nested": {"z": [1, None, True]}, "big": 2**62}
        await adapter.set("todo", "in|box", "t1", item)
        await adapter.delete("todo", "in|box", "t1")
        await adapter.send("todo", "in|box", None, {"type": "typing", "data": {"who": "ann"}})
        await collect(3)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]

    stored = orjson.dumps({**item, "id": "t1"})
    head = b'"stream":"todo","group":"in|box","id":"t1"'
    assert messages[0] == b'{"kind":"create","seq":1,' + head + b',"item":' + stored + b"}"
    assert messages[1] == b'{"kind":"delete","seq":2,' + head + b',"item":' + stored + b"}"
    assert orjson.loads(messages[2]) == {
        "kind": "event",
        "seq": 3,
        "stream": "todo",
        "group": "in|box",
        "id": None,
        "event": {"type": "typing", "data": {"who": "ann"}},
    }


async def test_a_write_on_one_instance_reaches_the_other_in_order(open_adapter: Opener) -> None:
    a, feed_a = await open_adapter()
    _, feed_b = await open_adapter()

    created = await a.set("todo", "inbox", "t1", {"v": 1})
    updated = await a.set("todo", "inbox", "t1", {"v": 2})
    await a.send("todo", "inbox", "t1", {"type": "typing", "data": None})
    deleted = await a.delete("todo", "inbox", "t1")

    expected = [
        created,
        updated,
        EphemeralEvent("todo", "inbox", "t1", {"type": "typing", "data": None}),
        deleted,
    ]
    await wait_until(lambda: len(feed_a) >= 4 and len(feed_b) >= 4)
    assert feed_b == expected
    assert feed_a == expected


async def test_racing_instances_make_one_create_per_key_and_see_one_order(
    open_adapter: Opener,
) -> None:
    a, feed_a = await open_adapter()
    b, feed_b = await open_adapter()
    adapters = (a, b)
    keys = [(group, id) for group in ("g1", "g2") for id in ("k1", "k2", "k3")]

    # 1,000 concurrent first-and-later writes to six fresh keys, half through each instance.
    results = await asyncio.gather(
        *(adapters[n % 2].set("race", *keys[n % len(keys)], {"n": n}) for n in range(1000))
    )
    creates = sorted((c.group, c.id) for c in results if c.kind == "create")
    assert creates == sorted(keys)

    # Then sets and deletes mixed, so that re-creates race with updates too.
    rng = random.Random(7)

    async def mixed(n: int) -> Change | None:
        adapter, key = adapters[n % 2], rng.choice(keys)
        if rng.random() < 0.3:
            return await adapter.delete("race", *key)
        return await adapter.set("race", *key, {"n": n})

    more = await asyncio.gather(*(mixed(n) for n in range(300)))
    applied = [c for c in [*results, *more] if c is not None]

    await wait_until(lambda: len(feed_a) >= len(applied) and len(feed_b) >= len(applied))
    assert feed_a == feed_b  # both instances saw the same changes in the same order
    assert len(feed_a) == len(applied)
    # Replaying the feed strictly (create only when absent, update/delete only when present)
    # gives the stored state, creation order included.
    state: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    last_seq: dict[str, int] = {}
    for change in changes(feed_a):
        assert change.seq > last_seq.get(change.group, 0)
        last_seq[change.group] = change.seq
        group = state.setdefault((change.stream, change.group), {})
        if change.kind == "create":
            assert change.id not in group
            group[change.id] = change.item
        elif change.kind == "update":
            group[change.id] = change.item
        else:
            assert group.pop(change.id) == change.item
    for group_id in ("g1", "g2"):
        snapshot = await b.get_group("race", group_id)
        assert snapshot.items == list(state[("race", group_id)].values())
        assert snapshot.seq == last_seq[group_id]


async def test_a_snapshot_returns_after_the_feed_delivered_what_it_reflects(
    open_adapter: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = await open_adapter()
    b, feed_b = await open_adapter()
    # B's listener lags: each message reaches B 10 ms late (in order), as under a backlog.
    backlog: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    on_message = b._on_message
    monkeypatch.setattr(b, "_on_message", backlog.put_nowait)

    async def lagging_listener() -> None:
        while True:
            message = await backlog.get()
            await asyncio.sleep(0.01)
            on_message(message)

    lagging = asyncio.create_task(lagging_listener())
    try:
        for i in range(3):
            change = await a.set("todo", "inbox", "t1", {"i": i})
            snapshot = await b.get_group("todo", "inbox")
            assert snapshot.seq >= change.seq
            assert change in feed_b  # so the hub never gets a change older than a sync it sent
            deleted = await a.delete("todo", "inbox", "t1")
            assert deleted is not None
            assert (await b.get_item_snapshot("todo", "inbox", "t1")).items == []
            assert deleted in feed_b
    finally:
        lagging.cancel()
        await asyncio.wait([lagging])


async def test_a_malformed_feed_message_is_logged_and_skipped(
    open_adapter: Opener, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    adapter, feed = await open_adapter()

    await raw.publish(adapter.feed_channel, b"not json")
    await raw.publish(adapter.feed_channel, b'{"kind":"rename","stream":"s","group":"g"}')
    change = await adapter.set("s", "g", "x", {})

    await wait_until(lambda: change in feed)
    assert feed == [change]
    assert [r.levelname for r in caplog.records if "malformed" in r.message] == [
        "WARNING",
        "WARNING",
    ]


async def test_close_stops_the_feed_listener_and_is_idempotent(open_adapter: Opener) -> None:
    adapter, _ = await open_adapter()

    await adapter.close()
    await adapter.close()

    assert not [t for t in asyncio.all_tasks() if t.get_name() == "surge-redis-feed"]
    with pytest.raises(StoreError, match="closed"):
        await adapter.get_group("s", "g")


# -- outages ----------------------------------------------------------------------------------


async def test_unreachable_redis_at_open_is_a_retryable_store_error_naming_host_and_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    adapter = RedisStreamAdapter(f"redis://:hunter2@127.0.0.1:{port}/0", prefix="surge-test")
    started = time.monotonic()

    with pytest.raises(StoreError) as caught:
        await adapter.open(lambda message: None)

    assert time.monotonic() - started < 5
    assert caught.value.retryable
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in caplog.text
    with pytest.raises(StoreError):
        await adapter.get("s", "g", "x")
    await adapter.close()


async def test_redis_restart_fails_writes_fast_then_resyncs_and_writes_again(
    private_redis: PrivateRedis, open_adapter: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    adapter, feed = await open_adapter(private_redis.url)
    before = await adapter.set("todo", "inbox", "t1", {"v": 1})
    await wait_until(lambda: before in feed)
    # Concurrent writes leave several pooled connections, all of which the restart kills.
    await asyncio.gather(*(adapter.send("todo", "inbox", None, {"type": "t"}) for _ in range(10)))
    await wait_until(lambda: len(feed) == 11)
    del feed[1:]

    await private_redis.kill()
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        await adapter.set("todo", "inbox", "t2", {"v": 2})
    assert caught.value.retryable
    assert time.monotonic() - started < 5
    assert f"127.0.0.1:{private_redis.port}" in str(caught.value)
    with pytest.raises(StoreError) as caught_read:
        await adapter.get_group("todo", "inbox")
    assert caught_read.value.retryable
    await wait_until(lambda: "Redis feed at" in caplog.text and "lost" in caplog.text)
    assert not any(isinstance(m, Resync) for m in feed)

    await private_redis.start()
    await wait_until(lambda: any(isinstance(m, Resync) for m in feed), within=10)

    # Every stale pooled connection is replaced, not failed once (redis/redis-py#4252).
    afters = await asyncio.gather(
        *(adapter.set("todo", "inbox", f"t{n}", {"v": n}) for n in range(3, 13))
    )
    assert [c.kind for c in afters] == ["create"] * 10
    await wait_until(lambda: all(c in feed for c in afters))
    assert feed[:2] == [before, Resync("redis feed reconnected")]
    assert len(feed) == 12
    assert [item["id"] for item in (await adapter.get_group("todo", "inbox")).items] == [
        c.id for c in sorted(afters, key=lambda c: c.seq)
    ]


async def test_a_feed_that_stops_answering_ping_is_reconnected(
    private_redis: PrivateRedis,
    open_adapter: Opener,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_store, "HEARTBEAT_S", 0.1)
    adapter, feed = await open_adapter(private_redis.url)
    control = aioredis.Redis.from_url(private_redis.url)
    try:
        # A paused server keeps the connection open but answers nothing: a half-open link.
        await control.client_pause(1000, all=True)
        with caplog.at_level(logging.WARNING):
            await wait_until(lambda: any(isinstance(m, Resync) for m in feed), within=10)
    finally:
        await control.aclose()
    assert "no reply to PING" in caplog.text
    change = await adapter.set("s", "g", "x", {})
    await wait_until(lambda: change in feed)


# -- history ----------------------------------------------------------------------------------


async def test_the_history_is_a_capped_expiring_list_in_the_groups_slot(
    open_adapter: Opener, raw: aioredis.Redis
) -> None:
    from surge.streams.history import HistoryPolicy

    adapter, _ = await open_adapter()
    adapter.configure_history("todo", HistoryPolicy(size=5, ttl=60))
    for n in range(9):
        await adapter.set("todo", "inbox", "t1", {"n": n})
    await adapter.send("todo", "inbox", None, {"type": "ping", "data": None})

    hist = adapter.history_key("todo", "inbox")
    entries = [e if isinstance(e, bytes) else e.encode() for e in await raw.lrange(hist, 0, -1)]
    assert len(entries) == 5
    assert [int(e.split(b" ", 1)[0]) for e in entries] == [6, 7, 8, 9, 10]
    assert b'"kind":"event","seq":10' in entries[-1]
    assert 0 < await raw.pttl(hist) <= 60_000
    assert key_slot(hist.encode()) == key_slot(adapter.group_keys("todo", "inbox")[0].encode())


async def test_a_flushed_redis_gets_a_new_epoch_and_refuses_old_offsets(
    open_adapter: Opener, prefix: str
) -> None:
    adapter, _ = await open_adapter()
    for n in range(3):
        await adapter.set("todo", "inbox", "t1", {"n": n})
    epoch = adapter.epoch
    assert (await adapter.read_history("todo", "inbox", 1)) is not None

    drop_redis_keys(prefix)  # the data is lost while the adapter stays connected
    for n in range(5):
        await adapter.set("todo", "inbox", "t1", {"n": n})

    assert await adapter.read_history("todo", "inbox", 1) is None
    assert adapter.epoch != epoch
