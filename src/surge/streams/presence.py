"""Presence storage: who is subscribed to a group, across every instance of a deployment.

The server's ``surge.server.presence.PresenceTracker`` knows this instance's subscribers and
tells a ``PresenceBackend`` when a member appears here (``add``) or is gone from here
(``remove``). The backend keeps the deployment-wide member set, decides when a member joins or
leaves the *deployment* (first instance to hold it, last one to let go) and announces exactly
those transitions as ``presence`` events through the stream feed, so every subscriber of the group
on every instance gets each join and each leave once (wire frames: docs/protocol.md, section 6).

Two backends:

- ``LocalPresence`` (here): one process is the deployment (memory and file stores). The member
  set is a dict; announcements go straight to this process's feed sink (the hub), never to
  storage: presence is not part of a group's history and costs no write.
- ``RedisPresence`` (``surge.streams.stores.redis_presence``, offered by the Redis adapter's
  ``presence_backend``): the member set lives in Redis, with instance heartbeats so that the
  members of an instance that died without saying goodbye are removed within a bound.

``PresenceSource`` is what the ``Stream`` facade needs to answer ``await stream.presence(g)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NotRequired, Protocol, TypedDict

from surge.streams.feed import EphemeralEvent

__all__ = [
    "PRESENCE_EVENT",
    "LocalPresence",
    "PresenceBackend",
    "PresenceMember",
    "PresenceSource",
    "presence_event",
]

PRESENCE_EVENT: Final = "presence"
"""The ``type`` of every presence event (what Motia's clients pass to ``onEvent``)."""


class PresenceMember(TypedDict):
    """One member of a group as the wire and ``stream.presence()`` show it."""

    id: str
    meta: NotRequired[dict[str, Any]]


def presence_event(action: str, **data: Any) -> dict[str, Any]:
    """The event payload of a presence frame: ``{"type": "presence", "data": {"action": ..}}``."""
    return {"type": PRESENCE_EVENT, "data": {"action": action, **data}}


class PresenceSource(Protocol):
    """Answers ``stream.presence(group_id)``."""

    async def members(self, stream: str, group: str) -> list[PresenceMember]:
        """The group's members in the whole deployment, sorted by id."""
        ...


class PresenceBackend(PresenceSource, Protocol):
    """The deployment-wide member sets (see the module docstring).

    ``add`` and ``remove`` are idempotent per (stream, group, member) for this instance; the
    tracker calls them only on transitions of its own state, one call at a time per member.
    ``on_reset`` is set by the tracker: the backend calls it when this instance's registrations
    were lost (the instance was declared dead, Redis lost its data), and the tracker then adds
    every local member again.
    """

    on_reset: Callable[[], None] | None

    async def add(self, stream: str, group: str, member: PresenceMember) -> None:
        """This instance holds ``member`` in the group; announce a join if it is new there."""
        ...

    async def remove(self, stream: str, group: str, member_id: str) -> None:
        """This instance no longer holds the member; announce a leave if no instance does."""
        ...

    async def maintain(self) -> None:
        """Long-lived upkeep (heartbeats, removing dead instances' members); may return at once."""
        ...

    async def close(self) -> None:
        """Withdraw every member this instance holds (announcing the leaves)."""
        ...


Deliver = Callable[[EphemeralEvent], None]
"""Hands a presence event to this process's subscribers (the hub's ``dispatch``)."""


class LocalPresence:
    """``PresenceBackend`` of a single process: the member sets are this process's."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._groups: dict[tuple[str, str], dict[str, PresenceMember]] = {}
        self.on_reset: Callable[[], None] | None = None

    async def add(self, stream: str, group: str, member: PresenceMember) -> None:
        """Record ``member``; announce its join when it was not there."""
        members = self._groups.setdefault((stream, group), {})
        if member["id"] in members:
            return
        members[member["id"]] = member
        self._deliver(EphemeralEvent(stream, group, None, presence_event("join", member=member)))

    async def remove(self, stream: str, group: str, member_id: str) -> None:
        """Forget the member; announce its leave when it was there."""
        members = self._groups.get((stream, group))
        if members is None or member_id not in members:
            return
        member = members.pop(member_id)
        if not members:
            del self._groups[(stream, group)]
        self._deliver(EphemeralEvent(stream, group, None, presence_event("leave", member=member)))

    async def members(self, stream: str, group: str) -> list[PresenceMember]:
        """The group's members, sorted by id."""
        members = self._groups.get((stream, group), {})
        return [members[k] for k in sorted(members)]

    async def maintain(self) -> None:
        """Nothing to keep up in one process."""

    async def close(self) -> None:
        """Forget everything (the process's subscribers are gone with it)."""
        self._groups.clear()

    def group_count(self) -> int:
        """How many groups have members (for tests of bounded memory)."""
        return len(self._groups)
