"""Durable per-step queues behind event steps: the contract and its backends.

``SqliteQueue`` (the default, embedded) is imported eagerly; ``RedisStreamsQueue`` only when first
used, so the ``redis`` package stays optional.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from surge.queues.base import (
    DeadLetter,
    Delivery,
    Envelope,
    MessageQueue,
    QueueStats,
    encode_data,
    validate_publish,
)
from surge.queues.sqlite import SqliteQueue

if TYPE_CHECKING:
    from surge.queues.redis import RedisStreamsQueue

__all__ = [
    "DeadLetter",
    "Delivery",
    "Envelope",
    "MessageQueue",
    "QueueStats",
    "RedisStreamsQueue",
    "SqliteQueue",
    "encode_data",
    "validate_publish",
]


def __getattr__(name: str) -> Any:
    if name == "RedisStreamsQueue":
        import importlib

        return importlib.import_module("surge.queues.redis").RedisStreamsQueue
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
