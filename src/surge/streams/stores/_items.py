"""Item and key handling shared by the built-in stores: every store accepts and rejects the same
keys and items, stores the same JSON bytes, and isolates its sink the same way."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from surge.errors import ValidationError
from surge.streams.feed import FeedMessage, FeedSink

__all__ = ["check_keys", "decode_item", "deliver", "encode_item"]

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
