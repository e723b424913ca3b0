"""Id validation: what may address stream data (surge.protocol.ids)."""

from __future__ import annotations

import pytest

from surge.protocol.ids import MAX_ID_LENGTH, id_problem


@pytest.mark.parametrize(
    "value",
    [
        "inbox",
        "a",
        "550e8400-e29b-41d4-a716-446655440000",
        "with space",
        "a/b.c:d",
        "héllo",
        "日本語",
        "emoji-🚀",
        "x" * MAX_ID_LENGTH,
        "é" * MAX_ID_LENGTH,
    ],
)
def test_acceptable_id_has_no_problem(value: str) -> None:
    assert id_problem(value, "groupId") is None


@pytest.mark.parametrize("value", [None, 1, 1.5, True, ["a"], {"a": 1}, b"inbox"])
def test_non_string_id_is_refused_as_not_a_string(value: object) -> None:
    assert id_problem(value, "groupId") == "groupId must be a string"


def test_empty_id_is_refused_as_empty() -> None:
    assert id_problem("", "streamName") == "streamName must not be empty"


def test_id_one_character_over_the_limit_is_refused_as_too_long() -> None:
    assert (
        id_problem("x" * (MAX_ID_LENGTH + 1), "id")
        == f"id is longer than {MAX_ID_LENGTH} characters"
    )


def test_id_length_is_counted_in_characters_not_bytes() -> None:
    # 256 three-byte characters: 768 UTF-8 bytes, still within the character limit.
    assert id_problem("日" * MAX_ID_LENGTH, "id") is None
    assert id_problem("日" * (MAX_ID_LENGTH + 1), "id") is not None


@pytest.mark.parametrize("char", ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f"])
def test_id_with_control_character_is_refused(char: str) -> None:
    assert id_problem(f"in{char}box", "subscriptionId") == (
        "subscriptionId contains control characters"
    )


@pytest.mark.parametrize("what", ["streamName", "groupId", "id", "subscriptionId"])
def test_problem_names_the_field(what: str) -> None:
    problem = id_problem("", what)
    assert problem is not None
    assert problem.startswith(f"{what} ")
