"""Delivery observers: a callback list told about every message's life in this process.

``Background.observers`` is one list shared by the ``Publisher`` and the ``EventRunner``; each
callable in it gets a ``DeliveryEvent``:

- ``published``: a copy of a message was durably enqueued for ``step`` (one per subscriber);
- ``started``: a handler run of ``step`` began (``attempt`` 1, 2, ...);
- ``retried``: it failed and is queued again after ``delay`` seconds (``error`` says why);
- ``done``: it succeeded and was acked;
- ``dead``: it was dead-lettered (``error``: the last failure, or the validation error).

Observers run synchronously on the event loop, in the middle of a delivery: they must be quick
and must not block (the Workbench appends to a bounded ring buffer). An observer that raises is
logged and skipped; it never changes the outcome of a delivery. With no observer registered
nothing is built. The list is only read in this process: another process's deliveries (Redis,
``--workers``) are not seen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DeliveryEvent", "DeliveryKind", "DeliveryObserver", "notify"]

logger = logging.getLogger(__name__)

DeliveryKind = Literal["published", "started", "retried", "done", "dead"]


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """One step of one message's life (see the module docstring for the kinds)."""

    kind: DeliveryKind
    step: str
    """The subscribing step (also its queue's name)."""
    topic: str
    message_id: str
    trace_id: str
    attempt: int = 0
    """0 for ``published``; the delivery's attempt otherwise."""
    error: str | None = None
    delay: float | None = None
    """Seconds until the retry (``retried`` only)."""
    at: float = field(default_factory=time.time)
    """Wall-clock seconds (``time.time()``)."""


DeliveryObserver = Callable[[DeliveryEvent], None]


def notify(observers: list[DeliveryObserver], event: DeliveryEvent) -> None:
    """Call every observer with ``event``; one that raises is logged and does not stop the rest."""
    for observer in observers:
        try:
            observer(event)
        except Exception:
            logger.exception("delivery observer %r failed on a %s event", observer, event.kind)
