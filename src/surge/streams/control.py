"""Cutting access from the server side: the facade's extension point and the control channel.

``streams.reauthorize(where)`` and ``streams.revoke(where)`` (``surge.streams.stream.Streams``)
hand the work to an ``AccessController`` (the server's ``surge.server.access_control``), which
acts on its own connections and, when the storage adapter is a ``ControlChannel`` (Redis),
publishes the command so that every other instance acts on its connections too.

``where`` picks connections by their auth context (what ``authenticate`` returned):

- a mapping, ``{"userId": "u1"}``: contexts whose fields (dict keys or attributes) equal every
  value given; anonymous connections never match. It is JSON, so it reaches every instance.
- None: every connection.
- a function ``(auth_context) -> bool``: this instance only, since a function cannot travel;
  with a distributed adapter it is refused with ``ValueError`` (use a mapping).

The control channel carries small JSON objects (``ControlMessage``) in the feed's order; the
adapter calls the sink on the event loop, like the feed sink.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["AccessController", "AccessMatch", "ControlChannel", "ControlMessage", "ControlSink"]

AccessMatch = Mapping[str, Any] | Callable[[Any], bool] | None
"""Which connections: auth-context fields, a predicate (this instance only), or None: all."""

ControlMessage = dict[str, Any]
"""One command between instances: ``{"type": "access", "action", "where", "origin"}``."""

ControlSink = Callable[[ControlMessage], None]


@runtime_checkable
class AccessController(Protocol):
    """What ``Streams.reauthorize`` and ``Streams.revoke`` call (the server implements it)."""

    async def reauthorize(self, where: AccessMatch = None) -> int:
        """Re-check the live subscriptions of the matching connections; returns how many this
        instance removed."""
        ...

    async def revoke(self, where: AccessMatch = None) -> int:
        """Close the matching connections; returns how many this instance closed."""
        ...


@runtime_checkable
class ControlChannel(Protocol):
    """A storage adapter that also carries control messages to every instance (Redis)."""

    def set_control_sink(self, sink: ControlSink | None) -> None:
        """Deliver the control messages other instances publish to ``sink``."""
        ...

    async def publish_control(self, message: ControlMessage) -> None:
        """Publish ``message`` to every instance (this one's sink gets it too).

        Raises:
            StoreError: the channel is unavailable (retryable).
        """
        ...
