"""Which API responses are stream items: the Workbench follows those live.

While a request is handled (``track`` is the server's response hook), every value ``set`` and
``get`` return is remembered with its (stream, group, id) (``observe`` is the stream value
observer); if the response body is one of those very objects, the response gets
``x-surge-stream-item: {"streamName","groupId","id"}`` (the body itself is never changed). Outside
a request, observing costs one ``ContextVar.get``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "STREAM_ITEM_HEADER",
    "ItemRef",
    "ReturnedItems",
    "observe",
    "track",
    "track_returned_items",
]

STREAM_ITEM_HEADER: Final = "x-surge-stream-item"
_object_id = id  # `id` is a parameter name below


@dataclass(frozen=True, slots=True)
class ItemRef:
    """Where a stream item lives; wire names, as a client's item join uses them."""

    streamName: str
    groupId: str
    id: str


class ReturnedItems:
    """The values ``set``/``get`` returned during one request, by object identity."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        # The value is kept alive with its ref so that its id() cannot be reused by another object.
        self._by_id: dict[int, tuple[Any, ItemRef]] = {}

    def remember(self, value: Any, ref: ItemRef) -> None:
        """Record that ``value`` is the item at ``ref`` (a later call for the same value wins)."""
        self._by_id[_object_id(value)] = (value, ref)

    def origin_of(self, value: Any) -> ItemRef | None:
        """The item ``value`` is (the very object, not an equal one), or None."""
        found = self._by_id.get(_object_id(value))
        if found is None or found[0] is not value:
            return None
        return found[1]


_returned_items: ContextVar[ReturnedItems | None] = ContextVar("surge_returned_items", default=None)


@contextmanager
def track_returned_items() -> Iterator[ReturnedItems]:
    """Record the values ``Stream.set``/``Stream.get`` return inside the block (this context)."""
    items = ReturnedItems()
    token = _returned_items.set(items)
    try:
        yield items
    finally:
        _returned_items.reset(token)


def observe(stream: str, group: str, id: str, value: Any) -> None:
    """The stream value observer: remember ``value`` when a request is being tracked."""
    tracked = _returned_items.get()
    if tracked is not None:
        tracked.remember(value, ItemRef(stream, group, id))


def _header(ref: ItemRef | None) -> Mapping[str, str]:
    if ref is None:
        return {}
    # json.dumps escapes non-ASCII: header values must be latin-1.
    value = json.dumps(
        {"streamName": ref.streamName, "groupId": ref.groupId, "id": ref.id}, separators=(",", ":")
    )
    return {STREAM_ITEM_HEADER: value}


@contextmanager
def track() -> Iterator[Any]:
    """The response hook: yields body -> ``{STREAM_ITEM_HEADER: ...}`` (or nothing)."""
    with track_returned_items() as returned:
        yield lambda body: _header(returned.origin_of(body))
