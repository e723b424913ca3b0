"""The hub's routing and its sync buffering, with recording connections (no sockets)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Message

from surge.protocol.codec import Frame, encode_group_sync
from surge.protocol.messages import SubscriptionRequest
from surge.protocol.session import Session
from surge.server.connection import Connection
from surge.server.hub import Hub, HubSubscription
from surge.server.outbox import Outbox
from surge.streams.feed import Change, EphemeralEvent


def make_conn(capacity: int = 100) -> Connection:
    return Connection(Session(), Outbox(capacity), None)


def queued(conn: Connection) -> list[dict[str, Any]]:
    return [orjson.loads(f.text) for f in conn.outbox._frames]


def req(group: str = "inbox", id: str | None = None, sid: str = "s1") -> SubscriptionRequest:
    return SubscriptionRequest(stream="todo", group=group, id=id, subscription_id=sid)


def change(id: str, seq: int, kind: str = "create", group: str = "inbox") -> Change:
    return Change(kind, "todo", group, id, {"id": id, "n": seq}, seq)  # type: ignore[arg-type]


def activate(hub: Hub, sub: HubSubscription, seq: int = 0) -> None:
    hub.activate(sub, encode_group_sync("todo", sub.request.group, [], hub.clock.next()), seq)


def test_change_reaches_group_subscriber_once_with_item_envelope() -> None:
    hub = Hub()
    conn = make_conn()
    activate(hub, hub.subscribe(conn, req()))
    hub.dispatch(change("t1", 1))
    frames = queued(conn)
    assert [f["event"]["type"] for f in frames] == ["sync", "create"]
    assert frames[1]["id"] == "t1" and frames[1]["event"]["data"] == {"id": "t1", "n": 1}


def test_connection_with_group_and_item_subscription_gets_one_frame_per_change() -> None:
    hub = Hub()
    conn = make_conn()
    activate(hub, hub.subscribe(conn, req()))
    activate(hub, hub.subscribe(conn, req(id="t1", sid="s2")))
    hub.dispatch(change("t1", 1))
    assert [f["event"]["type"] for f in queued(conn)] == ["sync", "sync", "create"]


def test_item_subscriber_of_other_group_gets_nothing_for_same_id() -> None:
    hub = Hub()
    conn = make_conn()
    activate(hub, hub.subscribe(conn, req(group="B", id="t1")))
    hub.dispatch(change("t1", 1, group="A"))
    hub.dispatch(EphemeralEvent("todo", "A", "t1", {"type": "typing", "data": None}))
    assert [f["event"]["type"] for f in queued(conn)] == ["sync"]


def test_group_event_without_id_skips_item_subscribers() -> None:
    hub = Hub()
    group_conn, item_conn = make_conn(), make_conn()
    activate(hub, hub.subscribe(group_conn, req()))
    activate(hub, hub.subscribe(item_conn, req(id="t1")))
    hub.dispatch(EphemeralEvent("todo", "inbox", None, {"type": "typing", "data": 1}))
    assert queued(group_conn)[-1]["event"] == {
        "type": "event",
        "event": {"type": "typing", "data": 1},
    }
    assert "id" not in queued(group_conn)[-1]
    assert len(queued(item_conn)) == 1  # only its sync


def test_changes_during_sync_are_held_and_only_newer_than_snapshot_delivered() -> None:
    hub = Hub()
    conn = make_conn()
    sub = hub.subscribe(conn, req())
    hub.dispatch(change("t1", 5))  # already in the snapshot (seq 6)
    hub.dispatch(EphemeralEvent("todo", "inbox", None, {"type": "typing", "data": None}))
    hub.dispatch(change("t1", 6, "update"))  # in the snapshot too
    hub.dispatch(change("t2", 7))  # after the snapshot: must follow the sync
    assert queued(conn) == []
    activate(hub, sub, seq=6)
    kinds = [(f["event"]["type"], f.get("id")) for f in queued(conn)]
    assert kinds == [("sync", None), ("event", None), ("create", "t2")]


def test_unsubscribed_pending_subscription_is_not_activated() -> None:
    hub = Hub()
    conn = make_conn()
    sub = hub.subscribe(conn, req())
    hub.unsubscribe(sub)
    activate(hub, sub)
    hub.dispatch(change("t1", 1))
    assert queued(conn) == []
    assert hub.subscriber_count(("todo", "inbox")) == 0


def test_no_subscriber_means_no_encoding() -> None:
    hub = Hub()
    hub.dispatch(change("t1", 1))
    assert hub.frames_encoded == 0


def test_full_outbox_overflows_instead_of_growing() -> None:
    hub = Hub()
    conn = make_conn(capacity=3)
    activate(hub, hub.subscribe(conn, req()))
    for seq in range(1, 10):
        hub.dispatch(change(f"t{seq}", seq))
    assert conn.outbox.is_overflowed
    assert len(conn.outbox) == 0  # dropped: the client resyncs after the 1013 close


def test_frames_restamped_when_not_newer_than_last_written() -> None:
    import asyncio

    from surge.server.transport import AsgiTransport

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        outbox = Outbox(10, transport=AsgiTransport(send))
        outbox.put(Frame(100, '{"timestamp":100,"a":1}'))
        outbox.put(Frame(50, '{"timestamp":50,"a":2}'))
        outbox.close(1000, "done")
        await outbox.run()

    asyncio.run(main())
    texts = [orjson.loads(m["text"]) for m in sent if m["type"] == "websocket.send"]
    assert texts == [{"timestamp": 100, "a": 1}, {"timestamp": 101, "a": 2}]
    assert sent[-1] == {"type": "websocket.close", "code": 1000, "reason": "done"}


def test_resync_puts_live_subscriptions_back_to_pending_and_reports_them() -> None:
    from surge.streams.feed import Resync

    reported: list[list[HubSubscription]] = []
    hub = Hub(on_resync=reported.append)
    conn = make_conn()
    live = hub.subscribe(conn, req())
    activate(hub, live)
    still_pending = hub.subscribe(conn, req(sid="s2", id="t9"))
    hub.dispatch(Resync("redis reconnected"))
    assert reported == [[live]]  # the pending one gets its first sync anyway
    assert live.pending == [] and still_pending.pending == []
    hub.dispatch(change("t1", 3))
    assert len(queued(conn)) == 1  # only the first sync: the change waits for the new sync
    activate(hub, live, seq=2)
    assert [f["event"]["type"] for f in queued(conn)] == ["sync", "sync", "create"]
