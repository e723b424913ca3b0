"""What only the Redis Streams queue does: outages, reconnects, its key layout."""

from __future__ import annotations

import dataclasses

import pytest

from redis_server import PrivateRedis, free_port
from surge.errors import ConfigError, StoreError
from surge.queues import Envelope

pytest.importorskip("redis")

from surge.queues.redis import RedisStreamsQueue

ENVELOPE = Envelope("job.requested", {"n": 1}, "trace-1")


async def test_open_without_a_server_is_a_retryable_store_error() -> None:
    queue = RedisStreamsQueue(f"redis://127.0.0.1:{free_port()}/0", prefix="surge-test-down")
    with pytest.raises(StoreError, match="cannot reach Redis") as caught:
        await queue.open()
    assert caught.value.retryable
    await queue.close()


async def test_outage_is_a_retryable_store_error_and_the_next_call_reconnects(
    private_redis: PrivateRedis,
) -> None:
    queue = RedisStreamsQueue(private_redis.url, prefix="surge-test-outage")
    await queue.open()
    try:
        await queue.publish(["q1"], ENVELOPE)
        await private_redis.kill()

        for call in (
            queue.publish(["q1"], ENVELOPE),
            queue.receive("q1", consumer="c1", limit=1, lease=30),
            queue.stats("q1"),
            queue.wait("q1", 0.5),
        ):
            with pytest.raises(StoreError, match="unavailable") as caught:
                await call
            assert caught.value.retryable
            assert "127.0.0.1" in str(caught.value)

        await private_redis.start()  # empty: no persistence
        [id] = await queue.publish(["q1"], ENVELOPE)
        [delivery] = await queue.receive("q1", consumer="c1", limit=1, lease=30)
        assert delivery.message_id == id
        await queue.ack(delivery)
    finally:
        await queue.close()


def test_every_key_of_a_queue_shares_one_hash_tag() -> None:
    queue = RedisStreamsQueue("redis://127.0.0.1:6379/0", prefix="app")
    keys = queue.queue_keys("Send{Mail}:x")
    names: tuple[str, ...] = dataclasses.astuple(keys)
    assert len(set(names)) == len(names) == 10
    assert {key.split("{", 1)[1].split("}", 1)[0] for key in names} == {"Send%7BMail%7D%3Ax"}
    assert all(key.startswith("app:q:{") for key in names)


def test_bad_prefix_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="prefix"):
        RedisStreamsQueue("redis://127.0.0.1:6379/0", prefix="a{b}")
