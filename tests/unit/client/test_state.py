"""Subscription state machines: the official clients' timestamp rules, copy-on-write state."""

from __future__ import annotations

from typing import Any

from surge.client.frames import ServerFrame
from surge.client.state import GroupState, ItemState


def frame(ts: int, kind: str, data: Any, id: str | None = None) -> ServerFrame:
    if id is None and isinstance(data, dict) and kind != "sync":
        id = data["id"]
    return ServerFrame(timestamp=ts, stream="todo", group="g", id=id, kind=kind, data=data)


def test_group_keeps_creation_order_and_updates_in_place() -> None:
    state = GroupState()
    state.apply(frame(1, "sync", [{"id": "a", "v": 0}]))
    state.apply(frame(2, "create", {"id": "b", "v": 0}))
    state.apply(frame(3, "update", {"id": "a", "v": 1}))
    assert state.state == [{"id": "a", "v": 1}, {"id": "b", "v": 0}]
    change = state.apply(frame(4, "delete", {"id": "a", "v": 1}))
    assert change is not None and change.kind == "delete" and change.id == "a"
    assert state.state == [{"id": "b", "v": 0}]


def test_group_drops_a_change_not_newer_than_the_last_for_that_item() -> None:
    state = GroupState()
    state.apply(frame(10, "sync", []))
    assert state.apply(frame(11, "create", {"id": "a", "v": 1})) is not None
    assert state.apply(frame(11, "update", {"id": "a", "v": 2})) is None
    assert state.apply(frame(9, "update", {"id": "a", "v": 3})) is None
    # Another item has its own watermark.
    assert state.apply(frame(5, "create", {"id": "b"})) is not None
    assert state.state == [{"id": "a", "v": 1}, {"id": "b"}]


def test_group_drops_an_older_sync_and_a_newer_sync_replaces_everything() -> None:
    state = GroupState()
    state.apply(frame(10, "sync", [{"id": "a"}]))
    assert state.apply(frame(9, "sync", [{"id": "old"}])) is None
    assert state.apply(frame(12, "sync", [{"id": "z"}])) is not None
    assert state.state == [{"id": "z"}]


def test_group_state_is_a_new_list_after_each_change() -> None:
    state = GroupState()
    state.apply(frame(1, "sync", []))
    before = state.state
    state.apply(frame(2, "create", {"id": "a"}))
    assert before == [] and state.state == [{"id": "a"}]


def test_reset_clock_accepts_a_restarted_server_behind_the_old_one() -> None:
    state = GroupState()
    state.apply(frame(1000, "sync", []))
    state.apply(frame(1001, "create", {"id": "a"}))
    state.reset_clock()
    assert state.apply(frame(500, "sync", [{"id": "b"}])) is not None
    assert state.apply(frame(501, "update", {"id": "b", "v": 1})) is not None
    assert state.state == [{"id": "b", "v": 1}]


def test_delete_of_an_absent_item_and_events_are_not_changes() -> None:
    state = GroupState()
    state.apply(frame(1, "sync", []))
    assert state.apply(frame(2, "delete", {"id": "x"})) is None
    assert state.apply(frame(3, "event", None)) is None


def test_item_drops_any_frame_not_newer_than_the_last() -> None:
    state = ItemState()
    assert state.apply(frame(5, "sync", None, id="a")) is not None
    assert state.state is None
    state.apply(frame(6, "create", {"id": "a", "v": 1}))
    assert state.apply(frame(6, "update", {"id": "a", "v": 2})) is None
    assert state.apply(frame(7, "update", {"id": "a", "v": 3})) is not None
    assert state.state == {"id": "a", "v": 3}
    change = state.apply(frame(8, "delete", {"id": "a", "v": 3}))
    assert change is not None and change.item == {"id": "a", "v": 3}
    assert state.state is None


# -- deltas and windows (protocol.md sections 4 and 5) --------------------------------------------


def patch(ts: int, id: str, *ops: dict[str, Any]) -> ServerFrame:
    return ServerFrame(
        timestamp=ts, stream="chat", group="g", id=id, kind="patch", data={"ops": list(ops)}
    )


def append(text: str) -> dict[str, Any]:
    return {"type": "append", "path": "content", "value": text}


def test_a_patch_applies_the_ops_to_a_copy_of_the_held_item_as_an_update() -> None:
    state = GroupState()
    state.apply(frame(1, "sync", [{"id": "m", "content": "He", "n": 1}, {"id": "o"}]))
    before = state.state

    change = state.apply(patch(2, "m", append("llo"), {"type": "increment", "path": "n"}))

    assert change is not None and change.kind == "update" and change.id == "m"
    assert change.item == {"id": "m", "content": "Hello", "n": 2}
    assert state.state == [{"id": "m", "content": "Hello", "n": 2}, {"id": "o"}]
    assert before[0] == {"id": "m", "content": "He", "n": 1}  # the old state is untouched


def test_a_patch_of_an_item_not_held_or_not_newer_is_ignored() -> None:
    state = GroupState()
    state.apply(frame(1, "sync", [{"id": "m", "content": ""}]))

    assert state.apply(patch(2, "unknown", append("x"))) is None
    assert state.apply(patch(3, "m", append("a"))) is not None
    assert state.apply(patch(3, "m", append("b"))) is None  # same timestamp: dropped
    assert state.state == [{"id": "m", "content": "a"}]


def test_a_patch_that_does_not_apply_keeps_the_item() -> None:
    state = GroupState()
    state.apply(frame(1, "sync", [{"id": "m", "content": 5}]))

    assert state.apply(patch(2, "m", append("x"))) is None
    assert state.apply(patch(3, "m", "not an op")) is None  # type: ignore[arg-type]
    assert state.state == [{"id": "m", "content": 5}]


def test_an_item_subscription_applies_patches_to_its_item() -> None:
    state = ItemState()
    assert state.apply(patch(1, "m", append("x"))) is None  # no copy yet
    state.apply(frame(2, "sync", {"id": "m", "content": "a"}, id="m"))

    change = state.apply(patch(3, "m", append("b")))

    assert change is not None and change.kind == "update"
    assert state.state == {"id": "m", "content": "ab"}


def windowed_sync(ts: int, items: list[dict[str, Any]], more: str | None) -> ServerFrame:
    return ServerFrame(ts, "chat", "g", None, "sync", items, more=more)


def test_a_windowed_sync_keeps_its_cursor_and_a_page_goes_before_the_held_items() -> None:
    state = GroupState()
    state.apply(windowed_sync(1, [{"id": "c"}, {"id": "d"}], "3"))
    assert state.more == "3"

    change = state.apply(ServerFrame(2, "chat", "g", None, "page", [{"id": "a"}, {"id": "b"}]))

    assert (
        change is not None and change.kind == "page" and change.item == [{"id": "a"}, {"id": "b"}]
    )
    assert [item["id"] for item in state.state] == ["a", "b", "c", "d"]
    assert state.more is None


def test_a_windowed_group_ignores_updates_of_items_outside_its_window() -> None:
    state = GroupState()
    state.apply(windowed_sync(1, [{"id": "c"}], "3"))

    assert state.apply(frame(2, "update", {"id": "old", "v": 1})) is None
    assert state.apply(frame(3, "create", {"id": "new"})) is not None
    assert [item["id"] for item in state.state] == ["c", "new"]
    # A whole group (no cursor) keeps the base behaviour: an unknown update is kept.
    whole = GroupState()
    whole.apply(windowed_sync(1, [], None))
    assert whole.apply(frame(2, "update", {"id": "x"})) is not None
