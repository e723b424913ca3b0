"""A subscription's public face: its state, callbacks, change iterators and waiters.

The client (``surge.client.client``) feeds it decoded frames; everything here runs on the
client's event loop. Callbacks are plain functions called in order with each change; one that
raises is logged and the others still run (use ``changes()`` for async work).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from surge.client.errors import ChangesOverflow, ClientClosed, ClientError
from surge.client.frames import ServerFrame
from surge.client.state import Change, GroupState, ItemState
from surge.protocol.messages import SubscriptionRequest


class _Owner(Protocol):
    """What a subscription needs of its client (``surge.client.client.Client``)."""

    async def _unsubscribe(self, sub: Any) -> None: ...

    async def _load_page(
        self,
        sub: Any,
        limit: int | None,
        timeout: float,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]: ...


__all__ = ["ChangeIterator", "GroupSubscription", "ItemSubscription", "Subscription"]

logger = logging.getLogger(__name__)

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)
DEFAULT_CHANGES_BUFFER = 1024


class _StateMachine(Protocol[S_co]):
    """``GroupState`` or ``ItemState`` (``surge.client.state``)."""

    @property
    def state(self) -> S_co: ...

    def apply(self, frame: ServerFrame) -> Change | None: ...

    def reset_clock(self) -> None: ...


class ChangeIterator:
    """``async for change in sub.changes()``: every change applied from now on, in order.

    Bounded: when more than ``max_buffer`` changes are waiting, the iterator is dropped from the
    subscription and raises ``ChangesOverflow`` (``sub.state`` stays current). It ends
    (``StopAsyncIteration``) when the subscription is unsubscribed or the client closed, and
    raises the ``SubscriptionError`` when the server refuses a re-join.
    """

    def __init__(self, sub: Subscription[Any], max_buffer: int) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self._sub = sub
        self._max = max_buffer
        self._queue: deque[Change] = deque()
        self._wakeup = asyncio.Event()
        self._overflowed = False
        self._done = False
        self._error: BaseException | None = None

    def put(self, change: Change) -> None:
        """Queue a change (the subscription's call)."""
        if self._overflowed or self._done:
            return
        if len(self._queue) >= self._max:
            self._overflowed = True
            self._queue.clear()
            self._sub._iterators.discard(self)
        else:
            self._queue.append(change)
        self._wakeup.set()

    def finish(self, error: BaseException | None = None) -> None:
        """End the iteration (after the queued changes), with ``error`` if given."""
        self._done = True
        self._error = error
        self._wakeup.set()

    def close(self) -> None:
        """Stop receiving changes."""
        self._sub._iterators.discard(self)
        self.finish()
        self._queue.clear()

    def __aiter__(self) -> ChangeIterator:
        return self

    async def __anext__(self) -> Change:
        while True:
            if self._overflowed:
                raise ChangesOverflow(
                    f"more than {self._max} changes of {self._sub} were not consumed"
                )
            if self._queue:
                return self._queue.popleft()
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()


class Subscription(Generic[S]):
    """What group and item subscriptions share; see ``GroupSubscription``/``ItemSubscription``."""

    def __init__(
        self, client: _Owner, request: SubscriptionRequest, machine: _StateMachine[S]
    ) -> None:
        self._client = client
        self.request = request
        self._machine = machine
        self._callbacks: list[Callable[[Change], object]] = []
        self._event_callbacks: dict[str, list[Callable[[Any], object]]] = {}
        self._iterators: set[ChangeIterator] = set()
        self._waiters: list[tuple[Callable[[S], bool], asyncio.Future[S]]] = []
        self._first_sync: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.is_synced = False
        """True once the current connection's sync arrived (False while reconnecting)."""
        self.error: ClientError | None = None
        """The server's refusal of a re-join, or why the subscription ended."""
        self.is_closed = False
        self.offset: int | None = None
        """This subscription's position in its group (docs/protocol.md section 2): the offset
        of the last sync, change or event applied; a re-join resumes from it."""
        self.epoch: str | None = None
        """The epoch ``offset`` belongs to."""
        self.recovered: bool | None = None
        """How the last re-join went: True resumed (only the missed messages were sent, events
        included), False a full sync (the server could not resume: events in the gap are
        lost), None not re-joined yet (or a server without resume)."""
        self.resumes = 0
        """How many re-joins were resumed."""
        self._replay_left = 0  # messages of the last resume still to come
        self._replay_to: int | None = None  # the position the resume brings this one to
        self.joined_on: object | None = None  # the connection this subscription was joined on

    def __repr__(self) -> str:
        request = self.request
        key = "/".join(k for k in (request.stream, request.group, request.id) if k is not None)
        return f"<{type(self).__name__} {key} {request.subscription_id}>"

    @property
    def stream(self) -> str:
        """The stream name."""
        return self.request.stream

    @property
    def group(self) -> str:
        """The group id."""
        return self.request.group

    @property
    def subscription_id(self) -> str:
        """The wire ``subscriptionId`` (kept across reconnects)."""
        return self.request.subscription_id

    @property
    def state(self) -> S:
        """The current state (a fresh object after every change; safe to read from any thread)."""
        return self._machine.state

    # -- listeners -------------------------------------------------------------------------------

    def on_change(self, callback: Callable[[Change], object]) -> Callable[[], None]:
        """Call ``callback(change)`` after every applied change; returns a function removing it."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def on_event(self, type: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        """Call ``callback(data)`` for every ephemeral event ``type`` (``send``); returns a
        function removing it."""
        callbacks = self._event_callbacks.setdefault(type, [])
        callbacks.append(callback)

        def remove() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return remove

    def changes(self, *, max_buffer: int = DEFAULT_CHANGES_BUFFER) -> ChangeIterator:
        """An async iterator of every change from now on (including the syncs after reconnects)."""
        iterator = ChangeIterator(self, max_buffer)
        if self.is_closed:
            iterator.finish(self.error)
        else:
            self._iterators.add(iterator)
        return iterator

    async def wait(self, predicate: Callable[[S], bool], timeout: float = 10.0) -> S:  # noqa: ASYNC109
        """Wait until ``predicate(state)`` holds and return that state.

        Raises:
            TimeoutError: it did not hold within ``timeout`` seconds (the message shows the state).
            ClientError: the subscription ended first (refused re-join, unsubscribed, closed).
        """
        state = self.state
        if predicate(state):
            return state
        if self.is_closed:
            raise self.error or ClientClosed(f"{self} is closed")
        future: asyncio.Future[S] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TimeoutError(
                f"{self}: condition not met within {timeout} s; state: {self.state!r}"
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def unsubscribe(self) -> None:
        """Leave: no more changes; the state keeps its last value."""
        await self._client._unsubscribe(self)

    # -- fed by the client ------------------------------------------------------------------------

    def _new_connection(self) -> None:
        self.is_synced = False
        self.joined_on = None
        self._replay_left, self._replay_to = 0, None
        self._machine.reset_clock()

    @property
    def since(self) -> tuple[int, str] | None:
        """The (offset, epoch) a re-join resumes from, or None (no position known yet)."""
        if self.offset is None or self.epoch is None:
            return None
        return self.offset, self.epoch

    def _resumed(self, frame: ServerFrame) -> None:
        """The server answered the join with a ``resume``: the missed messages follow."""
        data = frame.data if isinstance(frame.data, dict) else {}
        missed = data.get("missed")
        self._replay_left = missed if isinstance(missed, int) and missed > 0 else 0
        self._replay_to = frame.offset
        self.recovered = True
        self.resumes += 1
        self.is_synced = True
        if self._replay_left == 0:
            self._replayed()
        if not self._first_sync.done():
            self._first_sync.set_result(None)

    def _replayed(self) -> None:
        to, self._replay_to = self._replay_to, None
        if to is not None and (self.offset is None or to > self.offset):
            self.offset = to

    def _handle(self, frame: ServerFrame) -> None:
        offset = frame.offset
        if offset is not None:
            if frame.kind == "sync":
                self.offset, self.epoch = offset, frame.epoch
                if frame.recovered is False:
                    self.recovered = False
            elif frame.epoch == self.epoch and self.offset is not None and offset <= self.offset:
                return  # already applied (a replay to another subscription of this connection)
            else:
                self.offset, self.epoch = offset, frame.epoch
                if self._replay_left:
                    self._replay_left -= 1
                    if self._replay_left == 0:
                        self._replayed()
        if frame.kind == "event":
            if frame.event_type is not None:
                for callback in list(self._event_callbacks.get(frame.event_type, ())):
                    _call(callback, frame.event_data, self)
            return
        change = self._machine.apply(frame)
        if change is None:
            return
        if change.kind == "sync":
            self.is_synced = True
            if not self._first_sync.done():
                self._first_sync.set_result(None)
        for callback in list(self._callbacks):
            _call(callback, change, self)
        for iterator in list(self._iterators):
            iterator.put(change)
        if self._waiters:
            state = self.state
            for predicate, future in list(self._waiters):
                if future.done():
                    continue
                try:
                    if predicate(state):
                        future.set_result(state)
                except Exception as exc:
                    future.set_exception(exc)

    def _end(self, error: ClientError | None) -> None:
        """The subscription is over: refused (``error``), unsubscribed or closed (None)."""
        if self.is_closed:
            return
        self.is_closed = True
        self.is_synced = False
        self.error = error
        if not self._first_sync.done():
            self._first_sync.set_exception(error or ClientClosed(f"{self} was closed"))
            self._first_sync.exception()  # retrieved: no "never retrieved" warning if unawaited
        for iterator in list(self._iterators):
            iterator.finish(error)
        self._iterators.clear()
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(error or ClientClosed(f"{self} was closed"))


def _call(callback: Callable[[Any], object], arg: Any, sub: Subscription[Any]) -> None:
    try:
        callback(arg)
    except Exception:
        logger.exception("a callback of %s raised", sub)


class GroupSubscription(Subscription[list[dict[str, Any]]]):
    """A subscription to every item of (stream, group); ``state`` is the items in creation order.

    For a windowed stream (``StreamConfig(sync_limit=N)``) ``state`` starts with the newest N
    items; ``more`` is then the cursor of the older ones and ``load_older()`` fetches them, a
    page at a time, before the held items.

    For a presence stream (``StreamConfig(presence=True)``) ``members`` is who is subscribed to
    the group, kept from the ``presence`` events (``on_event("presence", ...)`` sees them too).
    """

    def __init__(self, client: _Owner, request: SubscriptionRequest) -> None:
        self._group = GroupState()
        super().__init__(client, request, self._group)
        self._members: dict[str, dict[str, Any]] = {}
        self.on_event("presence", self._apply_presence)

    @property
    def members(self) -> list[dict[str, Any]]:
        """The group's members (``{"id": .., "meta"?: ..}``), sorted by id; ``[]`` before the
        server's first list or for a stream without presence (protocol.md, section 6)."""
        return [self._members[k] for k in sorted(self._members)]

    def _apply_presence(self, data: Any) -> None:
        # Set operations, as the protocol asks: the order they arrive in ends in the current set.
        if not isinstance(data, dict):
            return
        action = data.get("action")
        if action == "sync" and isinstance(data.get("members"), list):
            self._members = {
                m["id"]: m for m in data["members"] if isinstance(m, dict) and "id" in m
            }
            return
        member = data.get("member")
        if not isinstance(member, dict) or not isinstance(member.get("id"), str):
            return
        if action == "join":
            self._members[member["id"]] = member
        elif action == "leave":
            self._members.pop(member["id"], None)

    @property
    def more(self) -> str | None:
        """The cursor of the items older than ``state`` holds, or None when it holds them all."""
        return self._group.more

    @property
    def has_more(self) -> bool:
        """True while older items can be loaded (``load_older``)."""
        return self._group.more is not None

    async def load_older(
        self,
        limit: int | None = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        """Load the page of items older than ``state`` holds (``limit`` of them; default: the
        stream's ``sync_limit``) and put them first in ``state``; returns them (``[]`` when
        there are none).

        Raises:
            SubscriptionError: the server refused the page request (its ``code``).
            ClientError: the subscription is closed or not synced on a live connection.
            TimeoutError: no answer within ``timeout``.
        """
        if self.more is None:
            return []
        return await self._client._load_page(self, limit, timeout)


class ItemSubscription(Subscription[dict[str, Any] | None]):
    """A subscription to one item; ``state`` is the item, or None when it does not exist."""

    def __init__(self, client: _Owner, request: SubscriptionRequest) -> None:
        super().__init__(client, request, ItemState())

    @property
    def id(self) -> str:
        """The item id."""
        item_id = self.request.id
        return item_id if item_id is not None else ""
