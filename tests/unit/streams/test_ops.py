"""``surge.streams.ops``: the semantics of each update op, pure (no store)."""

from __future__ import annotations

from typing import Any

import pytest

from surge.errors import ValidationError
from surge.streams.ops import MAX_OPS, apply_ops, apply_update, check_ops, is_same_json


def apply(item: dict[str, Any] | None, *ops: dict[str, Any]) -> dict[str, Any]:
    return apply_ops(item, check_ops(list(ops)), "x")


def test_a_missing_item_starts_empty_and_missing_fields_get_neutral_starts() -> None:
    assert apply(
        None,
        {"type": "increment", "path": "n", "by": 2},
        {"type": "decrement", "path": "m"},
        {"type": "append", "path": "s", "value": "tok"},
        {"type": "append", "path": "l", "value": 1},
        {"type": "merge", "path": "o", "value": {"k": 1}},
        {"type": "set", "path": "a.b.c", "value": None},
    ) == {"n": 2, "m": -1, "s": "tok", "l": [1], "o": {"k": 1}, "a": {"b": {"c": None}}, "id": "x"}


def test_numbers_keep_their_kind_and_floats_mix() -> None:
    assert apply({"n": 1}, {"type": "increment", "path": "n", "by": 0.5})["n"] == 1.5
    assert apply({"n": 2**62}, {"type": "increment", "path": "n"})["n"] == 2**62 + 1


def test_merge_is_shallow_and_remove_of_a_missing_path_is_a_no_op() -> None:
    item = {"o": {"a": {"deep": 1}, "b": 2}}
    assert apply(item, {"type": "merge", "path": "o", "value": {"a": {"new": 1}}}) == {
        "o": {"a": {"new": 1}, "b": 2},
        "id": "x",
    }
    assert apply({"k": 1}, {"type": "remove", "path": "no.such"}) == {"k": 1, "id": "x"}


@pytest.mark.parametrize(
    ("ops", "loc"),
    [
        ("set", ["ops"]),
        ([], ["ops"]),
        ([{"type": "remove", "path": "x"}] * (MAX_OPS + 1), ["ops"]),
        (["set"], ["ops", 0, "type"]),
        ([{"type": "remove", "path": "a"}, {"type": "set", "path": "b"}], ["ops", 1, "value"]),
        ([{"type": "merge", "path": "", "value": [1]}], ["ops", 0, "value"]),
        ([{"type": "increment", "path": "n", "by": True}], ["ops", 0, "by"]),
        ([{"type": "increment", "path": 3}], ["ops", 0, "path"]),
        ([{"type": "append", "path": "", "value": "x"}], ["ops", 0, "path"]),
    ],
)
def test_malformed_ops_are_refused_naming_where(ops: Any, loc: list[Any]) -> None:
    with pytest.raises(ValidationError) as info:
        check_ops(ops)
    assert info.value.errors[0]["loc"] == loc


def test_a_failing_op_names_its_index() -> None:
    with pytest.raises(ValidationError, match=r"ops\[2\].*'s'"):
        apply(
            {"s": "text"},
            {"type": "set", "path": "a", "value": 1},
            {"type": "remove", "path": "a"},
            {"type": "increment", "path": "s"},
        )


def test_applying_ops_never_changes_the_ops_themselves() -> None:
    value = {"x": 1}
    ops = check_ops(
        [
            {"type": "set", "path": "a", "value": value},
            {"type": "set", "path": "a.b", "value": None},
        ]
    )
    first = apply_ops({}, ops, "i")
    assert value == {"x": 1}  # the caller's object is untouched
    assert apply_ops({}, ops, "i") == first  # and the same ops give the same item again


def test_apply_update_offers_the_ops_for_an_existing_item_the_schema_kept() -> None:
    ops = check_ops([{"type": "append", "path": "s", "value": "b"}])

    stored, delta = apply_update({"s": "a", "id": "x"}, ops, "x", lambda item, is_new: item)

    assert stored == {"s": "ab", "id": "x"}
    assert delta == ops and delta is not ops
    assert apply_ops({"s": "a", "id": "x"}, delta, "x") == stored


def test_apply_update_offers_no_ops_for_a_create_or_a_changed_result() -> None:
    ops = check_ops([{"type": "set", "path": "n", "value": 1}])

    _, created = apply_update(None, ops, "x", None)
    _, coerced = apply_update({"n": 0}, ops, "x", lambda item, is_new: {**item, "n": 1.0})
    _, defaulted = apply_update({"n": 0}, ops, "x", lambda item, is_new: {**item, "d": 0})
    _, plain = apply_update({"n": 0}, ops, "x", None)

    assert (created, coerced, defaulted) == (None, None, None)
    assert plain == ops


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"a": [1, {"b": "c"}]}, {"a": [1, {"b": "c"}]}, True),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        (1, 1.0, False),
        (True, 1, False),
        ({"a": [1]}, {"a": [1.0]}, False),
        ({"a": None}, {}, False),
        ([1, 2], [1], False),
        ("1", 1, False),
    ],
)
def test_is_same_json_tells_json_types_apart(a: Any, b: Any, same: bool) -> None:
    assert is_same_json(a, b) is same
