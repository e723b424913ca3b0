"""Item and key handling shared by the built-in stores: every store accepts and rejects the same
keys and items, stores the same JSON bytes, and isolates its sink the same way."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from surge.errors import ValidationError
from surge.streams.feed import FeedMessage, FeedSink

__all__ = [
    "MAX_CURSOR_LENGTH",
    "check_keys",
    "check_window",
    "decode_item",
    "deliver",
    "encode_cursor",
    "encode_item",
]

MAX_CURSOR_LENGTH = 20
"""A cursor is the decimal creation position of an item: at most 20 digits (a 64-bit integer)."""

logger = logging.getLogger("surge.streams.stores")


def check_keys(stream: str, group: str, id: str | None) -> None:
    """Raise ValidationError unless the keys are strings of valid Unicode."""
    # The file store cannot bind strings that are not valid UTF-8 (lone surrogates); reject
    # them here too so every store accepts the same keys.
    for name, value in (("stream", stream), ("group", group), ("id", id)):
        if value is None and name == "id":
            continue
        if not isinstance(value, str):
            raise ValidationError(
                f"{name} must be a string",
                [{"loc": [name], "msg": "must be a string", "type": "string_type"}],
            )
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise ValidationError(
                f"{name} is not valid Unicode",
                [{"loc": [name], "msg": str(exc), "type": "string_unicode"}],
            ) from exc


def encode_item(id: str, item: dict[str, Any]) -> bytes:
    """The stored bytes of ``item`` with ``"id": id`` (the key wins)."""
    if not isinstance(item, dict):
        raise ValidationError(
            "item must be a JSON object",
            [{"loc": ["item"], "msg": "must be a JSON object", "type": "dict_type"}],
        )
    try:
        return orjson.dumps({**item, "id": id})
    except orjson.JSONEncodeError as exc:
        raise ValidationError(
            f"item is not JSON-serialisable: {exc}",
            [{"loc": ["item"], "msg": str(exc), "type": "json_invalid"}],
        ) from exc


def decode_item(data: bytes) -> dict[str, Any]:
    """A fresh dict from stored bytes."""
    item: dict[str, Any] = orjson.loads(data)
    return item


def deliver(sink: FeedSink, message: FeedMessage) -> None:
    """Call the sink; a failing sink is logged, never raised into the writer."""
    # The write is already applied; a failing sink must not turn it into a reported failure.
    try:
        sink(message)
    except Exception:
        logger.exception("feed sink failed on %s", type(message).__name__)


def encode_cursor(created: int) -> str:
    """The ``more`` cursor naming the items created before the item created at ``created``."""
    return str(created)


def check_window(limit: object, before: object) -> tuple[int | None, int | None]:
    """Validate ``get_group``'s ``limit`` (None or a positive int) and ``before`` (None or a
    cursor this store gave); return them as ints.

    Raises:
        ValidationError: naming ``limit`` or ``before``.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError(
            f"limit must be a positive integer, not {limit!r}",
            [{"loc": ["limit"], "msg": "positive integer", "type": "int_type"}],
        )
    if before is None:
        return limit, None
    if (
        not isinstance(before, str)
        or not 0 < len(before) <= MAX_CURSOR_LENGTH
        or not before.isascii()
        or not before.isdigit()
    ):
        raise ValidationError(
            f"before must be a cursor from a previous page ('more'), not {before!r}",
            [{"loc": ["before"], "msg": "not a cursor", "type": "value_error"}],
        )
    # Clamped so every store can bind it (SQLite integers are 64-bit); no position is larger.
    return limit, min(int(before), 2**63 - 1)
