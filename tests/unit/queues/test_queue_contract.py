"""The ``MessageQueue`` contract, run over every backend (sqlite-file, sqlite-memory, redis)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from redis_server import REDIS_TEST_URL
from surge.errors import ConfigError, StoreError, ValidationError
from surge.queues import Delivery, Envelope, MessageQueue, QueueStats, SqliteQueue

from .conftest import DEADLINE_S, Backend, envelope, poll

LONG_LEASE = 30.0


async def receive_within(
    queue: MessageQueue,
    name: str,
    *,
    consumer: str = "c1",
    limit: int = 10,
    lease: float = LONG_LEASE,
    within: float = DEADLINE_S,
) -> list[Delivery]:
    """Poll ``receive`` until it returns something."""
    got: list[Delivery] = []

    async def has_some() -> bool:
        nonlocal got
        got = await queue.receive(name, consumer=consumer, limit=limit, lease=lease)
        return bool(got)

    await poll(has_some, within)
    return got


async def receive_all(queue: MessageQueue, name: str, *, limit: int = 100) -> list[Delivery]:
    return await queue.receive(name, consumer="c1", limit=limit, lease=LONG_LEASE)


def data_of(deliveries: list[Delivery]) -> list[object]:
    return [d.envelope.data for d in deliveries]


# -- enqueue, ack, fan-out -------------------------------------------------------------------


async def test_published_message_is_delivered_once_then_gone_after_ack(
    queue: MessageQueue,
) -> None:
    [id] = await queue.publish(["q1"], Envelope("job.requested", {"n": 1}, "trace-7", None))

    [delivery] = await receive_all(queue, "q1")
    assert delivery.message_id == id
    assert delivery.queue == "q1"
    assert delivery.envelope == Envelope("job.requested", {"n": 1}, "trace-7", None)
    assert delivery.attempt == 1
    assert abs(delivery.enqueued_at - time.time()) < 60
    assert await receive_all(queue, "q1") == []  # leased: invisible

    await queue.ack(delivery)
    assert await queue.stats("q1") == QueueStats(ready=0, delayed=0, in_flight=0, dead=0)
    assert (await queue.stats("q1")).is_idle


async def test_publish_to_several_queues_gives_each_its_own_copy(queue: MessageQueue) -> None:
    ids = await queue.publish(["q1", "q2", "q3"], envelope({"n": 1}))
    assert len(set(ids)) == 3

    [first] = await receive_all(queue, "q1")
    await queue.ack(first)

    for name, id in zip(["q2", "q3"], ids[1:], strict=True):
        [copy] = await receive_all(queue, name)
        assert (copy.message_id, copy.envelope.data, copy.attempt) == (id, {"n": 1}, 1)
    assert await receive_all(queue, "q1") == []


async def test_receive_returns_at_most_limit_and_never_the_same_message_twice(
    queue: MessageQueue,
) -> None:
    for n in range(7):
        await queue.publish(["q1"], envelope(n))

    first = await queue.receive("q1", consumer="c1", limit=3, lease=LONG_LEASE)
    second = await queue.receive("q1", consumer="c2", limit=3, lease=LONG_LEASE)
    third = await queue.receive("q1", consumer="c1", limit=3, lease=LONG_LEASE)
    assert (len(first), len(second), len(third)) == (3, 3, 1)
    assert sorted(data_of(first + second + third)) == list(range(7))  # type: ignore[type-var]
    assert await queue.receive("q1", consumer="c1", limit=0, lease=LONG_LEASE) == []


async def test_concurrent_consumers_on_one_backend_share_the_messages_without_duplicates(
    backend: Backend,
) -> None:
    queues = [await backend.make(), await backend.make()]
    for n in range(60):
        await queues[0].publish(["q1"], envelope(n))
    seen: list[object] = []

    async def consume(queue: MessageQueue, consumer: str) -> None:
        while True:
            got = await queue.receive("q1", consumer=consumer, limit=4, lease=LONG_LEASE)
            if not got:
                return
            for delivery in got:
                seen.append(delivery.envelope.data)
                await queue.ack(delivery)

    async with asyncio.timeout(DEADLINE_S):
        await asyncio.gather(*(consume(q, f"c{i}") for i, q in enumerate(queues) for _ in "ab"))
    assert sorted(seen) == list(range(60))  # type: ignore[type-var]


# -- leases ----------------------------------------------------------------------------------


async def test_expired_lease_is_redelivered_to_another_consumer_with_attempt_plus_one(
    backend: Backend,
) -> None:
    first, second = await backend.make(), await backend.make()
    await first.publish(["q1"], envelope("job"))
    [lost] = await first.receive("q1", consumer="dies", limit=1, lease=0.3)

    # The first consumer "dies": it never acks. Another one gets the message after the lease.
    [again] = await receive_within(second, "q1", consumer="survivor", lease=0.3)
    assert again.message_id == lost.message_id
    assert again.attempt == 2
    assert again.envelope == lost.envelope

    # The dead consumer's late calls change nothing.
    assert await first.extend(lost, LONG_LEASE) is False
    await first.ack(lost)
    await first.retry(lost, delay=0, error="late")
    await first.dead_letter(lost, error="late")
    assert await second.extend(again, LONG_LEASE) is True
    stats = await second.stats("q1")
    assert (stats.in_flight, stats.dead) == (1, 0)
    await second.ack(again)
    assert (await second.stats("q1")).is_idle


async def test_a_closed_consumer_s_leased_message_goes_to_another_queue_object(
    shared_backend: Backend,
) -> None:
    first = shared_backend.new()
    await first.open()
    await first.publish(["q1"], envelope("job"))
    [lost] = await first.receive("q1", consumer="c1", limit=1, lease=0.3)
    await first.close()

    second = await shared_backend.make()
    [again] = await receive_within(second, "q1", lease=0.3)
    assert (again.message_id, again.attempt) == (lost.message_id, 2)


async def test_extend_keeps_the_lease_past_its_first_end(backend: Backend) -> None:
    holder, other = await backend.make(), await backend.make()
    await holder.publish(["q1"], envelope("long job"))
    lease = 1.5
    [delivery] = await holder.receive("q1", consumer="holder", limit=1, lease=lease)
    start = time.monotonic()
    while time.monotonic() - start < 2 * lease:  # well past the first lease's end
        assert await holder.extend(delivery, lease) is True
        assert await other.receive("q1", consumer="other", limit=1, lease=lease) == []
        await asyncio.sleep(0.1)
    await holder.ack(delivery)
    assert (await holder.stats("q1")).is_idle


# -- retries ---------------------------------------------------------------------------------


async def test_retry_with_delay_is_not_delivered_before_it_and_is_after(
    queue: MessageQueue,
) -> None:
    await queue.publish(["q1"], envelope("flaky"))
    [delivery] = await receive_all(queue, "q1")
    before_retry = time.monotonic()
    await queue.retry(delivery, delay=1.0, error="boom")

    assert await receive_all(queue, "q1") == []
    stats = await queue.stats("q1")
    assert (stats.delayed, stats.in_flight, stats.ready) == (1, 0, 0)
    [again] = await receive_within(queue, "q1")
    assert time.monotonic() - before_retry >= 0.9  # never early (clock granularity aside)
    assert (again.message_id, again.attempt, again.envelope) == (
        delivery.message_id,
        2,
        delivery.envelope,
    )


async def test_retry_without_delay_is_ready_at_once_and_attempts_keep_counting(
    queue: MessageQueue,
) -> None:
    await queue.publish(["q1"], envelope("flaky"))
    attempts = []
    for _ in range(3):
        [delivery] = await receive_all(queue, "q1")
        attempts.append(delivery.attempt)
        await queue.retry(delivery, delay=0, error="boom")
    assert attempts == [1, 2, 3]


# -- dead letters ----------------------------------------------------------------------------


async def test_dead_letter_is_listed_then_replayed_with_attempts_reset(
    queue: MessageQueue,
) -> None:
    await queue.publish(["q1"], envelope({"job": 1}))
    [first] = await receive_all(queue, "q1")
    await queue.retry(first, delay=0, error="boom")
    [second] = await receive_all(queue, "q1")
    await queue.dead_letter(second, error="ValueError: boom")

    assert await receive_all(queue, "q1") == []
    [letter] = await queue.dead_letters("q1")
    assert (letter.queue, letter.message_id, letter.envelope) == (
        "q1",
        first.message_id,
        first.envelope,
    )
    assert (letter.attempts, letter.error) == (2, "ValueError: boom")
    assert abs(letter.failed_at - time.time()) < 60
    assert (await queue.stats("q1")).dead == 1

    assert await queue.replay("q1", first.message_id) is True
    assert await queue.replay("q1", first.message_id) is False  # no longer a dead letter
    assert await queue.dead_letters("q1") == []
    [replayed] = await receive_all(queue, "q1")
    assert (replayed.message_id, replayed.attempt) == (first.message_id, 1)
    assert replayed.envelope == first.envelope


async def test_dead_letters_are_newest_first_and_discard_removes_one(queue: MessageQueue) -> None:
    for n in range(3):
        await queue.publish(["q1"], envelope(n))
    for delivery in sorted(await receive_all(queue, "q1"), key=lambda d: d.envelope.data):
        await queue.dead_letter(delivery, error=f"error {delivery.envelope.data}")
        await asyncio.sleep(0.01)  # distinct failure times, so "newest first" is defined

    letters = await queue.dead_letters("q1")
    assert [letter.envelope.data for letter in letters] == [2, 1, 0]
    assert [letter.envelope.data for letter in await queue.dead_letters("q1", limit=2)] == [2, 1]

    assert await queue.discard("q1", letters[1].message_id) is True
    assert await queue.discard("q1", letters[1].message_id) is False
    assert await queue.discard("q1", "no-such-id") is False
    assert await queue.replay("q1", "no-such-id") is False
    assert [letter.envelope.data for letter in await queue.dead_letters("q1")] == [2, 0]
    assert await receive_all(queue, "q1") == []  # discarding delivers nothing


async def test_poison_message_is_dead_lettered_and_does_not_block_the_ones_behind(
    backend: Backend, queue: MessageQueue
) -> None:
    [poison] = await queue.publish(["q1"], envelope("will be corrupted"))
    [poison_head] = await queue.publish(["q1"], envelope("corrupted head", group="g"))
    await queue.publish(["q1"], envelope("behind"))
    await queue.publish(["q1"], envelope("behind in group", group="g"))
    await backend.corrupt(queue, "q1", poison)
    await backend.corrupt(queue, "q1", poison_head)

    got = await receive_all(queue, "q1", limit=2)
    assert sorted(data_of(got)) == ["behind", "behind in group"]  # type: ignore[type-var]
    letters = await queue.dead_letters("q1")
    assert sorted(letter.message_id for letter in letters) == sorted([poison, poison_head])
    assert all("decode" in letter.error for letter in letters)


# -- FIFO groups -----------------------------------------------------------------------------


async def test_fifo_group_is_delivered_one_at_a_time_in_order_even_with_retries(
    queue: MessageQueue,
) -> None:
    for n in range(3):
        await queue.publish(["q1"], envelope(f"a{n}", group="a"))
    await queue.publish(["q1"], envelope("b0", group="b"))
    await queue.publish(["q1"], envelope("free"))

    first = await receive_all(queue, "q1")
    assert sorted(data_of(first)) == ["a0", "b0", "free"]  # type: ignore[type-var]
    by_data = {d.envelope.data: d for d in first}

    await queue.retry(by_data["a0"], delay=0, error="boom")
    [again] = await receive_all(queue, "q1")
    assert (again.envelope.data, again.attempt) == ("a0", 2)  # not a1: a0 is still the head
    await queue.ack(again)
    [a1] = await receive_all(queue, "q1")
    assert a1.envelope.data == "a1"
    assert await receive_all(queue, "q1") == []  # a2 waits for a1
    await queue.ack(a1)
    [a2] = await receive_all(queue, "q1")
    assert a2.envelope.data == "a2"


async def test_fifo_group_waits_for_a_delayed_retry_of_its_head_without_blocking_others(
    queue: MessageQueue,
) -> None:
    await queue.publish(["q1"], envelope("a0", group="a"))
    await queue.publish(["q1"], envelope("a1", group="a"))
    [a0] = await receive_all(queue, "q1")
    await queue.retry(a0, delay=1.0, error="boom")
    await queue.publish(["q1"], envelope("b0", group="b"))

    [b0] = await receive_all(queue, "q1")  # a1 is not delivered while a0 waits
    assert b0.envelope.data == "b0"
    [again] = await receive_within(queue, "q1")
    assert (again.envelope.data, again.attempt) == ("a0", 2)


async def test_expired_lease_of_a_group_head_redelivers_the_head_not_the_next(
    backend: Backend,
) -> None:
    first, second = await backend.make(), await backend.make()
    await first.publish(["q1"], envelope("a0", group="a"))
    await first.publish(["q1"], envelope("a1", group="a"))
    [a0] = await first.receive("q1", consumer="dies", limit=10, lease=0.3)
    assert a0.envelope.data == "a0"

    got = await receive_within(second, "q1", consumer="survivor", lease=0.3)
    assert [(d.envelope.data, d.attempt) for d in got] == [("a0", 2)]


async def test_dead_lettered_head_unblocks_its_group(queue: MessageQueue) -> None:
    await queue.publish(["q1"], envelope("a0", group="a"))
    await queue.publish(["q1"], envelope("a1", group="a"))
    [a0] = await receive_all(queue, "q1")
    await queue.dead_letter(a0, error="gave up")
    [a1] = await receive_all(queue, "q1")
    assert a1.envelope.data == "a1"


async def test_replayed_grouped_message_goes_to_the_end_of_its_group(queue: MessageQueue) -> None:
    await queue.publish(["q1"], envelope("a0", group="a"))
    await queue.publish(["q1"], envelope("a1", group="a"))
    [a0] = await receive_all(queue, "q1")
    await queue.dead_letter(a0, error="gave up")
    [a1] = await receive_all(queue, "q1")
    assert await queue.replay("q1", a0.message_id) is True
    assert await receive_all(queue, "q1") == []  # a1 is still being handled
    await queue.ack(a1)
    [replayed] = await receive_all(queue, "q1")
    assert (replayed.envelope.data, replayed.attempt) == ("a0", 1)


# -- stats, wait -----------------------------------------------------------------------------


async def test_stats_count_ready_delayed_in_flight_and_dead(queue: MessageQueue) -> None:
    for n in range(5):
        await queue.publish(["q1"], envelope(n))
    got = await queue.receive("q1", consumer="c1", limit=3, lease=LONG_LEASE)
    await queue.retry(got[0], delay=60, error="later")
    await queue.dead_letter(got[1], error="never")
    assert await queue.stats("q1") == QueueStats(ready=2, delayed=1, in_flight=1, dead=1)
    assert not (await queue.stats("q1")).is_idle
    assert await queue.stats("unknown") == QueueStats(ready=0, delayed=0, in_flight=0, dead=0)


async def test_wait_wakes_on_publish_long_before_its_timeout(backend: Backend) -> None:
    queue = await backend.make(poll_interval=20.0)
    publisher = await backend.make() if backend.is_shared else queue
    assert await receive_all(queue, "q1") == []
    waiter = asyncio.create_task(queue.wait("q1", 20.0))
    await asyncio.sleep(0.1)  # let the waiter block first (if it did not, it returns at once)
    start = time.monotonic()
    await publisher.publish(["q1"], envelope("wake up"))
    if backend.name == "sqlite-file" and publisher is not queue:
        # Another process's publish is only seen by polling: publish through the waiter too.
        await queue.publish(["q1"], envelope("wake up locally"))
    async with asyncio.timeout(10):
        await waiter
    assert time.monotonic() - start < 10
    assert len(await receive_all(queue, "q1")) >= 1


async def test_wait_without_messages_returns_after_its_timeout(backend: Backend) -> None:
    queue = await backend.make(poll_interval=20.0)
    assert await receive_all(queue, "q1") == []
    start = time.monotonic()
    async with asyncio.timeout(10):
        await queue.wait("q1", 0.3)
    assert time.monotonic() - start >= 0.25


async def test_wait_returns_when_a_retry_becomes_due(queue: MessageQueue) -> None:
    await queue.publish(["q1"], envelope("flaky"))
    [delivery] = await receive_all(queue, "q1")
    await queue.retry(delivery, delay=0.3, error="boom")
    assert await receive_all(queue, "q1") == []
    async with asyncio.timeout(10):
        while not await receive_all(queue, "q1"):
            await queue.wait("q1", 5.0)


# -- input -----------------------------------------------------------------------------------


async def test_publish_rejects_bad_queue_names_ids_and_data(queue: MessageQueue) -> None:
    with pytest.raises(ValidationError, match="JSON"):
        await queue.publish(["q1"], envelope(object()))
    with pytest.raises(ValidationError):
        await queue.publish([], envelope(1))
    with pytest.raises(ValidationError):
        await queue.publish(["q1", "q1"], envelope(1))
    with pytest.raises(ValidationError):
        await queue.publish([""], envelope(1))
    with pytest.raises(ValidationError):
        await queue.publish(["q1"], envelope(1, group=""))
    with pytest.raises(ValidationError):
        await queue.publish(["q1"], Envelope("t", 1, "x" * 1000))
    assert (await queue.stats("q1")).is_idle


async def test_queue_names_with_key_syntax_stay_separate(queue: MessageQueue) -> None:
    names = ["a:b", "a}b", "a{b", "a%3Ab", "ünï 🎉"]
    for name in names:
        await queue.publish([name], envelope(name, group="g|x"))
    for name in names:
        assert data_of(await receive_all(queue, name)) == [name]


# -- durability ------------------------------------------------------------------------------


async def test_messages_and_dead_letters_survive_close_and_reopen(shared_backend: Backend) -> None:
    first = shared_backend.new()
    await first.open()
    await first.publish(["q1"], envelope("kept", group="g"))
    await first.publish(["q1"], envelope("dead"))
    await first.publish(["q1"], envelope("waits", group="g"))
    got = await first.receive("q1", consumer="c1", limit=10, lease=LONG_LEASE)
    [dead] = [d for d in got if d.envelope.data == "dead"]
    await first.dead_letter(dead, error="boom")
    await first.close()

    second = await shared_backend.make()
    [letter] = await second.dead_letters("q1")
    assert letter.envelope.data == "dead"
    stats = await second.stats("q1")
    assert (stats.ready + stats.in_flight, stats.dead) == (2, 1)


CHILD_PUBLISHES = """
import asyncio, os, sys
from surge.queues import Envelope, SqliteQueue

async def main():
    queue = SqliteQueue(sys.argv[1])
    await queue.open()
    for n in range(int(sys.argv[2])):
        ids = await queue.publish(["q1", "q2"], Envelope("t", {"n": n}, "trace", None))
        print(*ids, sep="\\n", flush=True)  # acknowledged: it must survive what follows
    ids = await asyncio.gather(
        *(queue.publish(["q1"], Envelope("t", {"burst": n}, "trace", None)) for n in range(50))
    )
    print(*(i for [i] in ids), sep="\\n", flush=True)
    os.kill(os.getpid(), 9)

asyncio.run(main())
"""


async def run_child(script: str, *args: str) -> tuple[int, list[str]]:
    """Run a Python child to its end (kill -9 included); returns its exit code and stdout lines."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == -9, err.decode()
    return proc.returncode, out.decode().split()


async def test_sqlite_messages_acknowledged_before_kill_9_are_all_there(tmp_path: Path) -> None:
    path = tmp_path / "queues.db"
    _, ids = await run_child(CHILD_PUBLISHES, str(path), "40")
    assert len(ids) == 40 * 2 + 50  # two queues per sequential publish, then the burst

    queue = SqliteQueue(path)
    await queue.open()
    try:
        seen = {d.message_id for d in await receive_all(queue, "q1", limit=1000)}
        seen |= {d.message_id for d in await receive_all(queue, "q2", limit=1000)}
        assert set(ids) <= seen
    finally:
        await queue.close()


CHILD_LEASES = """
import asyncio, os, sys
from surge.queues import Envelope, SqliteQueue

async def main():
    if sys.argv[1] == "redis":
        from surge.queues.redis import RedisStreamsQueue
        queue = RedisStreamsQueue(sys.argv[2], prefix=sys.argv[3])
    else:
        queue = SqliteQueue(sys.argv[2])
    await queue.open()
    await queue.publish(["q1"], Envelope("t", "in flight", "trace", None))
    [delivery] = await queue.receive("q1", consumer="worker", limit=1, lease=600)
    print(delivery.message_id, flush=True)
    os.kill(os.getpid(), 9)  # dies mid-handler, holding a 10-minute lease

asyncio.run(main())
"""


async def test_restart_after_kill_9_gets_the_in_flight_message_at_once(
    shared_backend: Backend,
) -> None:
    if shared_backend.name == "redis":
        shared_backend.new()  # skips when no Redis answers
        args = ["redis", REDIS_TEST_URL, shared_backend.prefix]
    else:
        args = ["sqlite", str(shared_backend.db_path)]
    _, [message_id] = await run_child(CHILD_LEASES, *args)

    queue = await shared_backend.make()
    # Not after the 600 s lease: the dead process's lease is released on first use.
    [again] = await receive_within(queue, "q1", consumer="worker", within=DEADLINE_S)
    assert (again.message_id, again.attempt, again.envelope.data) == (message_id, 2, "in flight")


def test_sqlite_queue_refuses_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synchronous"):
        SqliteQueue(tmp_path / "q.db", synchronous="off")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="poll_interval"):
        SqliteQueue(tmp_path / "q.db", poll_interval=0)


async def test_closed_queue_refuses_calls(backend: Backend) -> None:
    queue = backend.new()
    await queue.open()
    await queue.close()
    await queue.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await queue.publish(["q1"], envelope(1))


# -- the trace parent (tracing on: surge.tracing) --------------------------------------------

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_the_trace_parent_travels_with_the_message_and_survives_a_replay(
    queue: MessageQueue,
) -> None:
    sent = Envelope("job.requested", {"n": 1}, "4bf92f3577b34da6a3ce929d0e0e4736", None, PARENT)
    [id] = await queue.publish(["q1"], sent)
    [delivery] = await receive_all(queue, "q1")
    assert delivery.envelope == sent
    await queue.dead_letter(delivery, error="boom")
    assert await queue.replay("q1", id)
    [again] = await receive_within(queue, "q1")
    assert again.envelope.trace_parent == PARENT

    await queue.publish(["q2"], Envelope("job.requested", {}, "trace-8", None))
    [plain] = await receive_all(queue, "q2")
    assert plain.envelope.trace_parent is None


async def test_a_version_1_queue_file_is_migrated_keeping_its_messages(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "queue.sqlite3"
    first = SqliteQueue(path)
    await first.open()
    await first.publish(["q1"], Envelope("old", {"n": 1}, "trace-1", None))
    await first.close()
    with sqlite3.connect(path) as conn:  # back to what a Surge before tracing wrote
        conn.execute("ALTER TABLE messages DROP COLUMN trace_parent")
        conn.execute("ALTER TABLE dead_letters DROP COLUMN trace_parent")
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    queue = SqliteQueue(path)
    await queue.open()
    try:
        [old] = await receive_all(queue, "q1")
        assert old.envelope == Envelope("old", {"n": 1}, "trace-1", None)
        await queue.publish(["q1"], Envelope("new", {}, "trace-2", None, PARENT))
        await queue.ack(old)
        [new] = await receive_all(queue, "q1")
        assert new.envelope.trace_parent == PARENT
    finally:
        await queue.close()


async def test_sqlite_open_waits_out_another_process_holding_a_new_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the file store's: the switch of a new database to WAL is retried, not fatal, while
    # another process (two `surge start` workers creating one queue database) holds it.
    import sqlite3
    import threading

    from surge.queues import sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(sqlite_module, "BUSY_RETRIES", 6)  # ~1.4 s of retries in all
    path = tmp_path / "queues.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.2, other.execute, ("COMMIT",))
    release.start()
    queue = SqliteQueue(path)
    try:
        await queue.open()
        await queue.publish(["q1"], envelope({"n": 1}))
        assert data_of(await receive_all(queue, "q1", limit=10)) == [{"n": 1}]
    finally:
        await queue.close()
        release.join()
        other.close()
