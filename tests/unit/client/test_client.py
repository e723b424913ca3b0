"""The protocol client against a scripted fake transport: joins, routing, errors, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from surge.client import (
    AccessRevoked,
    Backoff,
    Change,
    ChangesOverflow,
    Client,
    ClientClosed,
    ConnectionState,
    SubscriptionError,
    UpgradeRefused,
)
from surge.errors import ValidationError

from .fakes import FakeConnection, FakeTransport, change, error, event, refused, sync

pytestmark = pytest.mark.timeout(30)

FAST = Backoff(initial=0.001, max_delay=0.01, stable_after=60.0)


@pytest.fixture
async def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
async def client(transport: FakeTransport) -> AsyncIterator[Client]:
    async with Client(transport, backoff=FAST) as client:
        yield client


async def subscribed_group(
    client: Client,
    conn: FakeConnection,
    data: list[dict[str, Any]],
    ts: int = 1,
    group: str = "inbox",
) -> Any:
    """Subscribe to todo/<group>, answering the join with a sync of ``data``."""
    task = asyncio.create_task(client.subscribe_group("todo", group))
    sent = await conn.next_sent(len(conn.sent) + 1)
    assert sent[-1]["type"] == "join"
    conn.push(sync(ts, data, group=group))
    return await task


async def test_subscribe_group_sends_a_join_and_returns_the_synced_state(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    sub = await subscribed_group(client, conn, [{"id": "a"}])
    assert sub.state == [{"id": "a"}]
    assert sub.is_synced
    join = conn.sent[0]
    assert join["data"]["streamName"] == "todo" and join["data"]["groupId"] == "inbox"
    assert join["data"]["subscriptionId"] == sub.subscription_id
    assert client.state is ConnectionState.OPEN


async def test_changes_reach_callbacks_iterators_and_waiters_in_order(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    sub = await subscribed_group(client, conn, [])
    seen: list[Change] = []
    sub.on_change(seen.append)
    changes = sub.changes()
    conn.push(change(2, "create", {"id": "a", "v": 1}))
    conn.push(change(3, "update", {"id": "a", "v": 2}))
    state = await sub.wait(lambda items: items == [{"id": "a", "v": 2}])
    assert state == [{"id": "a", "v": 2}]
    assert [c.kind for c in seen] == ["create", "update"]
    assert [(await anext(changes)).kind, (await anext(changes)).kind] == ["create", "update"]


async def test_one_frame_serves_every_matching_subscription(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    group = await subscribed_group(client, conn, [])
    task = asyncio.create_task(client.subscribe_item("todo", "inbox", "a"))
    await conn.next_sent(2)
    conn.push(sync(2, None, id="a"))
    item = await task
    conn.push(change(3, "create", {"id": "a"}))
    await item.wait(lambda value: value == {"id": "a"})
    await group.wait(lambda items: items == [{"id": "a"}])


async def test_events_go_to_on_event_listeners_of_their_type(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    sub = await subscribed_group(client, conn, [])
    typing: list[Any] = []
    sub.on_event("typing", typing.append)
    remove = sub.on_event("other", lambda data: pytest.fail("wrong type"))
    remove()
    conn.push(event(2, "typing", {"user": "u1"}))
    conn.push(event(3, "other", 1))
    conn.push(change(4, "create", {"id": "done"}))  # a barrier: frames are handled in order
    await sub.wait(lambda items: len(items) == 1)
    assert typing == [{"user": "u1"}]


async def test_a_refused_join_raises_subscription_error_with_the_code(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    task = asyncio.create_task(client.subscribe_group("todo", "secret"))
    await conn.next_sent(1)
    conn.push(error(2, "STREAM_ACCESS_DENIED", group="secret"))
    with pytest.raises(SubscriptionError) as caught:
        await task
    assert caught.value.code == "STREAM_ACCESS_DENIED"
    assert client.subscriptions == []


async def test_errors_answer_joins_of_the_same_key_in_order(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    first = asyncio.create_task(client.subscribe_group("todo", "inbox"))
    await conn.next_sent(1)
    second = asyncio.create_task(client.subscribe_group("todo", "inbox"))
    await conn.next_sent(2)
    conn.push(sync(2, [{"id": "a"}]))
    conn.push(error(3, "TOO_MANY_SUBSCRIPTIONS"))
    sub = await first
    with pytest.raises(SubscriptionError, match="TOO_MANY_SUBSCRIPTIONS"):
        await second
    assert sub.state == [{"id": "a"}] and not sub.is_closed


async def test_reconnect_rejoins_with_the_same_ids_and_the_fresh_sync_replaces_state(
    client: Client, transport: FakeTransport
) -> None:
    states: list[ConnectionState] = []
    client.on_state_change(states.append)
    conn = await transport.connection(0)
    group = await subscribed_group(client, conn, [{"id": "a"}], ts=1000)
    task = asyncio.create_task(client.subscribe_item("todo", "inbox", "a"))
    await conn.next_sent(2)
    conn.push(sync(1001, {"id": "a"}, id="a"))
    item = await task
    conn.drop()
    again = await transport.connection(1)
    joins = await again.next_sent(2)
    assert {j["data"]["subscriptionId"] for j in joins} == {
        group.subscription_id,
        item.subscription_id,
    }
    assert not group.is_synced
    # A restarted server's clock may be behind the old one's: its frames still count.
    again.push(sync(10, [{"id": "b"}]))
    again.push(sync(11, None, id="a"))
    await group.wait(lambda items: items == [{"id": "b"}])
    await item.wait(lambda value: value is None)
    assert states == [ConnectionState.RECONNECTING, ConnectionState.OPEN]
    assert client.connections == 2


async def test_connection_attempts_are_retried_until_one_succeeds(
    transport: FakeTransport,
) -> None:
    transport.fail_next(OSError("refused"), TimeoutError(), OSError("refused"))
    states: list[ConnectionState] = []
    async with Client(transport, backoff=FAST, on_state_change=states.append) as client:
        await client.wait_open()
        assert transport.attempts == 4
        assert states == [ConnectionState.OPEN]  # "connecting" until the first open


async def test_a_subscribe_while_disconnected_is_joined_once_connected(
    transport: FakeTransport,
) -> None:
    transport.fail_next(OSError("down"), OSError("down"))
    async with Client(transport, backoff=FAST) as client:
        task = asyncio.create_task(client.subscribe_group("todo", "inbox"))
        conn = await transport.connection(0)
        await conn.next_sent(1)
        conn.push(sync(1, []))
        assert (await task).state == []
        assert len(conn.sent) == 1  # joined exactly once


async def test_a_refused_upgrade_closes_the_client_and_fails_subscribes(
    transport: FakeTransport,
) -> None:
    transport.fail_next(refused(401))
    async with Client(transport, backoff=FAST) as client:
        with pytest.raises(UpgradeRefused) as caught:
            await client.subscribe_group("todo", "inbox")
        assert caught.value.status == 401
        assert client.state is ConnectionState.CLOSED
        with pytest.raises(UpgradeRefused):
            await client.subscribe_group("todo", "inbox")
        assert transport.attempts == 1


async def test_retry_refused_keeps_trying(transport: FakeTransport) -> None:
    transport.fail_next(refused(401), refused(401))
    async with Client(transport, backoff=FAST, retry_refused=True) as client:
        await client.wait_open()
        assert transport.attempts == 3


async def test_a_4003_close_closes_the_client_and_fails_subscribes(
    transport: FakeTransport,
) -> None:
    async with Client(transport, backoff=FAST) as client:
        conn = await transport.connection(0)
        sub = await subscribed_group(client, conn, [])
        conn.drop(4003)
        await client.wait_state(ConnectionState.CLOSED)
        with pytest.raises(AccessRevoked) as caught:
            await sub.wait(lambda items: False, timeout=5)
        assert caught.value.code == 4003
        with pytest.raises(AccessRevoked):
            await client.subscribe_group("todo", "other")
        assert transport.attempts == 1


async def test_a_4029_close_does_not_reset_the_backoff(transport: FakeTransport) -> None:
    asked: list[int] = []

    class Recorded(Backoff):
        __slots__ = ()

        def delay(self, attempt: int, rng: Any = None) -> float:
            asked.append(attempt)
            return 0.001

    # Every connection counts as long-lived: only a 4029 keeps the attempt count growing.
    async with Client(transport, backoff=Recorded(stable_after=0.0)) as client:
        await client.wait_open()
        for index, code in enumerate((4029, 4029, 1006)):
            (await transport.connection(index)).drop(code)
            await transport.connection(index + 1)
        assert asked == [0, 1, 0]


async def test_a_refused_rejoin_ends_the_subscription_with_the_error(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    sub = await subscribed_group(client, conn, [])
    changes = sub.changes()
    conn.drop()
    again = await transport.connection(1)
    await again.next_sent(1)
    again.push(error(5, "STREAM_ACCESS_DENIED"))
    with pytest.raises(SubscriptionError):
        await anext(changes)
    assert sub.is_closed and isinstance(sub.error, SubscriptionError)
    with pytest.raises(SubscriptionError):
        await sub.wait(lambda items: len(items) == 1)


async def test_unsubscribe_sends_the_leave_and_ends_iterators(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    sub = await subscribed_group(client, conn, [])
    changes = sub.changes()
    await sub.unsubscribe()
    leave = conn.sent[-1]
    assert leave["type"] == "leave" and leave["data"] == conn.sent[0]["data"]
    with pytest.raises(StopAsyncIteration):
        await anext(changes)
    conn.push(change(2, "create", {"id": "late"}))
    conn.push(sync(3, []))  # nothing listens: ignored
    assert sub.state == []


async def test_a_change_iterator_that_falls_behind_raises_overflow(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    sub = await subscribed_group(client, conn, [])
    changes = sub.changes(max_buffer=2)
    for ts in range(2, 6):
        conn.push(change(ts, "create", {"id": f"i{ts}"}))
    await sub.wait(lambda items: len(items) == 4)
    with pytest.raises(ChangesOverflow):
        await anext(changes)


async def test_wait_times_out_with_the_state_in_the_message(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    sub = await subscribed_group(client, conn, [{"id": "only"}])
    with pytest.raises(TimeoutError, match="only"):
        await sub.wait(lambda items: len(items) == 2, timeout=0.05)


async def test_subscribe_times_out_when_no_answer_comes(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    with pytest.raises(TimeoutError, match="no sync"):
        await client.subscribe_group("todo", "inbox", timeout=0.05)
    assert client.subscriptions == []
    assert [m["type"] for m in conn.sent] == ["join", "leave"]


async def test_close_ends_waiters_and_later_subscribes(transport: FakeTransport) -> None:
    client = Client(transport, backoff=FAST)
    client.start()
    conn = await transport.connection(0)
    sub = await subscribed_group(client, conn, [])
    waiter = asyncio.create_task(sub.wait(lambda items: False, timeout=10))
    await asyncio.sleep(0)
    await client.close()
    with pytest.raises(ClientClosed):
        await waiter
    with pytest.raises(ClientClosed):
        await client.subscribe_group("todo", "inbox")
    assert client.state is ConnectionState.CLOSED


async def test_invalid_ids_are_refused_before_anything_is_sent(client: Client) -> None:
    with pytest.raises(ValidationError, match="groupId"):
        await client.subscribe_group("todo", "")
    with pytest.raises(ValidationError, match="control"):
        await client.subscribe_item("todo", "inbox", "a\nb")


async def test_a_frame_that_is_not_an_envelope_is_ignored(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    sub = await subscribed_group(client, conn, [])
    conn.inbound.put_nowait("garbage")
    conn.push(change(2, "create", {"id": "a"}))
    await sub.wait(lambda items: len(items) == 1)


# -- resume (docs/protocol.md section 3) ------------------------------------------------------


def framed(ts: int, offset: int, event: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {
        "timestamp": ts,
        "streamName": "todo",
        "groupId": "inbox",
        **envelope,
        "offset": offset,
        "epoch": "E1",
        "event": event,
    }


async def test_a_rejoin_carries_since_and_a_resume_replays_into_the_kept_state(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    task = asyncio.create_task(client.subscribe_group("todo", "inbox"))
    first = (await conn.next_sent(1))[0]
    assert "since" not in first["data"]
    conn.push(framed(10, 5, {"type": "sync", "data": [{"id": "a"}]}))
    group = await task
    events: list[Any] = []
    group.on_event("typing", events.append)
    conn.push(framed(11, 7, {"type": "create", "data": {"id": "b"}}, id="b"))
    await group.wait(lambda items: len(items) == 2)
    conn.drop()

    again = await transport.connection(1)
    join = (await again.next_sent(1))[0]
    assert join["data"]["since"] == {"offset": 7, "epoch": "E1"}
    again.push(framed(1, 20, {"type": "resume", "data": {"since": 7, "missed": 2}}))
    again.push(framed(2, 9, {"type": "update", "data": {"id": "a", "n": 1}}, id="a"))
    again.push(framed(3, 12, {"type": "event", "event": {"type": "typing", "data": "ann"}}))
    # The same message again (a replay to another subscription of the connection): dropped.
    again.push(framed(4, 12, {"type": "event", "event": {"type": "typing", "data": "ann"}}))
    again.push(framed(5, 21, {"type": "delete", "data": {"id": "b"}}, id="b"))
    await group.wait(lambda items: items == [{"id": "a", "n": 1}])
    assert events == ["ann"]
    assert (group.recovered, group.resumes, group.offset) == (True, 1, 21)


async def test_a_batched_resume_applies_its_missed_messages_in_order_and_events_once(
    client: Client, transport: FakeTransport
) -> None:
    # The compact form's resume (protocol.md section 3): the missed messages inside the resume
    # frame, all with its timestamp; two changes of one item there both apply, in order.
    conn = await transport.connection(0)
    task = asyncio.create_task(client.subscribe_group("todo", "inbox"))
    await conn.next_sent(1)
    conn.push(framed(10, 5, {"type": "sync", "data": [{"id": "a", "n": 0}, {"id": "b"}]}))
    group = await task
    events: list[Any] = []
    group.on_event("typing", events.append)
    changes: list[tuple[str, int | None]] = []
    group.on_change(lambda change: changes.append((change.kind, change.offset)))
    conn.drop()

    again = await transport.connection(1)
    join = (await again.next_sent(1))[0]
    assert join["data"]["since"] == {"offset": 5, "epoch": "E1"}
    replay = [
        [6, "patch", "a", [["increment", "n", 2]]],
        [7, "event", None, {"type": "typing", "data": "ann"}],
        [8, "patch", "a", [["set", "s", "x"]]],
        [9, "delete", "b", {"id": "b"}],
        [10, "create", "c", {"id": "c"}],
        [11, "update", "a", {"id": "a", "n": 3, "s": "y"}],
    ]
    again.push(
        framed(1, 12, {"type": "resume", "data": {"since": 5, "missed": 6, "replay": replay}})
    )
    # Live after it, and the same event again (a frame to another subscription): dropped.
    again.push(framed(2, 7, {"type": "event", "event": {"type": "typing", "data": "ann"}}))
    again.push(framed(3, 13, {"type": "update", "data": {"id": "c", "v": 1}}, id="c"))
    await group.wait(lambda items: items == [{"id": "a", "n": 3, "s": "y"}, {"id": "c", "v": 1}])
    assert events == ["ann"]
    assert changes == [
        ("update", 6),
        ("update", 8),
        ("delete", 9),
        ("create", 10),
        ("update", 11),
        ("update", 13),
    ]
    assert (group.recovered, group.resumes, group.offset) == (True, 1, 13)


async def test_a_sync_marked_not_recovered_replaces_the_state_and_says_so(
    client: Client, transport: FakeTransport
) -> None:
    conn = await transport.connection(0)
    task = asyncio.create_task(client.subscribe_group("todo", "inbox"))
    await conn.next_sent(1)
    conn.push(framed(10, 5, {"type": "sync", "data": [{"id": "a"}]}))
    group = await task
    conn.drop()
    again = await transport.connection(1)
    await again.next_sent(1)
    again.push({**framed(1, 2, {"type": "sync", "data": [{"id": "z"}]}), "recovered": False})
    await group.wait(lambda items: items == [{"id": "z"}])
    assert (group.recovered, group.resumes, group.offset) == (False, 0, 2)


async def test_a_client_without_resume_never_sends_since(transport: FakeTransport) -> None:
    async with Client(transport, backoff=FAST, resume=False) as client:
        conn = await transport.connection(0)
        task = asyncio.create_task(client.subscribe_group("todo", "inbox"))
        await conn.next_sent(1)
        conn.push(framed(10, 5, {"type": "sync", "data": []}))
        await task
        conn.drop()
        again = await transport.connection(1)
        assert "since" not in (await again.next_sent(1))[0]["data"]


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_an_upgrade_answered_with_a_passing_error_is_retried(
    transport: FakeTransport, status: int
) -> None:
    transport.fail_next(UpgradeRefused(status, "later"), UpgradeRefused(status, "later"))
    async with Client(transport, backoff=FAST) as client:
        await client.wait_open()
        assert transport.attempts == 3
        assert client.state is ConnectionState.OPEN


async def reconnect_waits(transport: FakeTransport, backoff: Backoff) -> list[float]:
    """The delays the client sleeps between attempts until it is open (no real waiting)."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float, *args: Any) -> Any:
        waits.append(delay)
        return await real_sleep(0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("surge.client.client.asyncio.sleep", recording_sleep)
        async with Client(transport, backoff=backoff) as client:
            await client.wait_open()
    return waits


async def test_a_retry_after_is_the_least_wait_within_the_backoffs_cap(
    transport: FakeTransport,
) -> None:
    transport.fail_next(
        UpgradeRefused(429, "slow down", retry_after=0.25),
        UpgradeRefused(503, "full", retry_after=3600.0),  # more than the cap: the cap
        UpgradeRefused(503, "full"),  # none: the backoff alone
    )
    waits = await reconnect_waits(transport, Backoff(initial=0.001, max_delay=0.5, jitter=0.0))
    assert waits[:3] == [0.25, 0.5, 0.004]


def test_retry_after_parses_seconds_only() -> None:
    from surge.client.errors import retry_after_seconds

    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(" 0.5 ") == 0.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after_seconds("-1") is None
    assert retry_after_seconds("nan") is None
    assert retry_after_seconds(None) is None


async def test_clients_refused_together_come_back_spread_above_the_retry_after(
    transport: FakeTransport,
) -> None:
    transport.fail_next(*(UpgradeRefused(429, "slow down", retry_after=1.0) for _ in range(40)))
    waits = await reconnect_waits(transport, Backoff(initial=0.01, jitter=0.5))
    spread = waits[:8]  # attempts 0-7: the backoff's own delay is below the floor
    assert all(1.0 <= wait <= 1.5 for wait in spread), spread
    assert len({round(wait, 6) for wait in spread}) > 1  # not all the same instant
