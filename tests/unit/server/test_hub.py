"""The hub's routing and its sync buffering, with recording connections (no sockets)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Message

from surge.protocol.codec import Frame, PatchFrame, encode_group_sync
from surge.protocol.messages import SubscriptionRequest
from surge.protocol.session import Session
from surge.server.connection import Connection
from surge.server.hub import Hub, HubSubscription
from surge.server.outbox import Outbox
from surge.streams.feed import Change, EphemeralEvent, GroupSnapshot


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


# -- deltas (protocol.md section 4) ---------------------------------------------------------------

APPEND = [{"type": "append", "path": "content", "value": " tok"}]


def dreq(group: str = "inbox", id: str | None = None, sid: str = "s1") -> SubscriptionRequest:
    return SubscriptionRequest("todo", group, id, sid, deltas=True)


def patched(id: str, seq: int, group: str = "inbox") -> Change:
    item = {"id": id, "content": "x" * 500 + " tok"}
    return Change("update", "todo", group, id, item, seq, APPEND)


def kinds(conn: Connection) -> list[str]:
    return [f["event"]["type"] for f in queued(conn)]


def test_a_delta_subscriber_gets_the_ops_and_a_plain_one_the_whole_item() -> None:
    hub = Hub()
    delta, plain = make_conn(), make_conn()
    activate(hub, hub.subscribe(delta, dreq()))
    activate(hub, hub.subscribe(plain, req()))

    hub.dispatch(patched("m1", 5))

    assert kinds(delta) == ["sync", "patch"] and kinds(plain) == ["sync", "update"]
    assert queued(delta)[1]["event"]["data"] == {"ops": APPEND}
    assert queued(plain)[1]["event"]["data"] == patched("m1", 5).item
    # One encode of each form, shared: the whole item is the patch frame's own.
    patch, whole = delta.outbox._frames[-1], plain.outbox._frames[-1]
    assert isinstance(patch, PatchFrame) and patch.full is whole
    assert queued(delta)[1]["timestamp"] == queued(plain)[1]["timestamp"]


def test_without_a_delta_subscriber_no_patch_is_encoded() -> None:
    hub = Hub()
    conns = [make_conn() for _ in range(3)]
    for n, conn in enumerate(conns):
        activate(hub, hub.subscribe(conn, req(sid=f"s{n}")))
    elsewhere = make_conn()
    activate(hub, hub.subscribe(elsewhere, dreq(group="other")))

    hub.dispatch(patched("m1", 5))

    frames = [conn.outbox._frames[-1] for conn in conns]
    assert all(type(f) is Frame for f in frames) and frames[0] is frames[1] is frames[2]
    assert kinds(elsewhere) == ["sync"]


def test_many_delta_subscribers_share_one_patch_frame() -> None:
    hub = Hub()
    conns = [make_conn() for _ in range(4)]
    for n, conn in enumerate(conns):
        activate(hub, hub.subscribe(conn, dreq(sid=f"s{n}")))

    hub.dispatch(patched("m1", 5))

    frames = {id(conn.outbox._frames[-1]) for conn in conns}
    assert len(frames) == 1 and kinds(conns[0])[-1] == "patch"
    patch = conns[0].outbox._frames[-1]
    assert isinstance(patch, PatchFrame) and patch._forms.full is None  # whole item never encoded


def test_compact_subscribers_share_the_compact_form_and_a_verbose_twin_gets_the_verbose() -> None:
    hub = Hub()
    compact = [make_conn() for _ in range(2)]
    for n, conn in enumerate(compact):
        request = SubscriptionRequest("todo", "inbox", None, f"c{n}", deltas=True, compact=True)
        activate(hub, hub.subscribe(conn, request))
    mixed = make_conn()  # a compact group subscription and a verbose item one: verbose serves both
    activate(hub, hub.subscribe(mixed, SubscriptionRequest("todo", "inbox", None, "g", True, True)))
    activate(hub, hub.subscribe(mixed, dreq(id="m1", sid="i")))

    hub.dispatch(patched("m1", 5))

    first, second = (conn.outbox._frames[-1] for conn in compact)
    assert first is second and first.text.startswith('{"timestamp":')
    assert queued(compact[0])[-1]["patch"][:3] == ["todo", "inbox", "m1"]
    assert isinstance(first, PatchFrame) and first._forms.full is None
    assert kinds(mixed)[-1] == "patch"


def test_a_connection_with_a_plain_subscription_to_the_item_gets_the_whole_item() -> None:
    hub = Hub()
    conn = make_conn()
    activate(hub, hub.subscribe(conn, dreq()))
    activate(hub, hub.subscribe(conn, req(id="m1", sid="s2")))

    hub.dispatch(patched("m1", 5))

    assert kinds(conn) == ["sync", "sync", "update"]  # one frame, serving both subscriptions


def test_delta_item_and_group_subscriptions_of_one_connection_get_one_patch() -> None:
    hub = Hub()
    conn = make_conn()
    activate(hub, hub.subscribe(conn, dreq()))
    activate(hub, hub.subscribe(conn, dreq(id="m1", sid="s2")))

    hub.dispatch(patched("m1", 5))

    assert kinds(conn) == ["sync", "sync", "patch"]


def test_creates_deletes_and_sets_go_whole_to_delta_subscribers() -> None:
    hub = Hub()
    conn = make_conn()
    activate(hub, hub.subscribe(conn, dreq()))

    hub.dispatch(change("m1", 1))
    hub.dispatch(change("m1", 2, "update"))
    hub.dispatch(change("m1", 3, "delete"))

    assert kinds(conn) == ["sync", "create", "update", "delete"]


def test_a_pending_delta_subscription_buffers_the_whole_item() -> None:
    hub = Hub()
    conn = make_conn()
    sub = hub.subscribe(conn, dreq())

    hub.dispatch(patched("m1", 5))
    activate(hub, sub, seq=4)

    assert kinds(conn) == ["sync", "update"]


def test_a_change_the_sync_already_reflects_never_comes_as_a_patch() -> None:
    # A local store may commit a change, a snapshot may read it, and only then is it dispatched:
    # the client's copy already has it, so applying its ops would apply them twice.
    hub = Hub()
    conn = make_conn()
    activate(hub, hub.subscribe(conn, dreq()), seq=7)

    hub.dispatch(patched("m1", 6))
    hub.dispatch(patched("m1", 7))
    hub.dispatch(patched("m1", 8))

    assert kinds(conn) == ["sync", "update", "update", "patch"]


def test_a_page_makes_the_changes_it_may_reflect_go_whole() -> None:
    hub = Hub()
    conn = make_conn()
    sub = hub.subscribe(conn, dreq())
    activate(hub, sub, seq=3)

    hub.paged(sub, 9)
    hub.dispatch(patched("m1", 9))
    hub.dispatch(patched("m1", 10))
    hub.paged(sub, 2)  # an older page never lowers it

    assert kinds(conn) == ["sync", "update", "patch"]


def test_unsubscribing_the_last_delta_subscription_stops_patch_encoding() -> None:
    hub = Hub()
    conn, plain = make_conn(), make_conn()
    sub = hub.subscribe(conn, dreq())
    activate(hub, sub)
    activate(hub, hub.subscribe(plain, req()))

    hub.unsubscribe(sub)
    hub.unsubscribe(sub)  # idempotent: the count does not go below zero
    hub.dispatch(patched("m1", 5))

    assert type(plain.outbox._frames[-1]) is Frame
    assert hub._delta_subs == {}


# -- pages (protocol.md section 5) ----------------------------------------------------------------


def test_a_page_capture_brings_the_page_up_to_the_changes_dispatched_meanwhile() -> None:
    hub = Hub()
    capture = hub.capture("todo", "inbox")
    other = hub.capture("todo", "elsewhere")
    snapshot = GroupSnapshot([{"id": "a", "v": 0}, {"id": "b", "v": 0}, {"id": "c", "v": 0}], 10)

    hub.dispatch(Change("update", "todo", "inbox", "a", {"id": "a", "v": 9}, 9))  # in the page
    hub.dispatch(Change("update", "todo", "inbox", "b", {"id": "b", "v": 1}, 11))
    hub.dispatch(Change("delete", "todo", "inbox", "c", {"id": "c", "v": 0}, 12))
    hub.dispatch(Change("create", "todo", "inbox", "d", {"id": "d"}, 13))  # newer: not in it
    hub.release(capture)
    hub.dispatch(Change("update", "todo", "inbox", "a", {"id": "a", "v": 99}, 14))

    assert capture.apply(snapshot) == [{"id": "a", "v": 0}, {"id": "b", "v": 1}]
    assert other.changes == []
    hub.release(other)
    hub.release(other)
    assert hub._captures == {}
