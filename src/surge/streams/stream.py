"""The facade handlers use: ``ctx.streams.todo.set(...)`` and friends.

Data flow of a write: validate ids and data (nothing is stored or sent when that fails) ->
``adapter.set`` (atomic create-vs-update, durable) -> the adapter feeds the change to the hub,
which encodes it once and fans it out. ``send`` goes to the adapter's feed only, never to storage.
``update`` checks the ops here, then hands them to ``adapter.update`` with the schema as its
``validate`` callback: the store applies them atomically and stores nothing the schema refuses.
Building a ``Stream`` tells the adapter the stream's history policy (``StreamConfig.history_size``
and ``history_ttl``).
TTL: an explicit ``ttl=`` wins; else ``set`` and creating updates use ``StreamConfig.ttl``.

An optional ``observe`` callback sees every value ``set`` and ``get`` return with its (stream,
group, id): the server's plugins use it (the Workbench tells which response body *is* a stream
item). Without one, the cost is one ``is None`` test per call.

``presence(group_id)`` asks the server's presence registry (a ``PresenceSource`` the server
hands in) who is subscribed to the group, on every instance; only for ``presence=True`` streams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson

from surge.errors import ConfigError, ValidationError
from surge.protocol.ids import id_problem
from surge.streams.adapter import StreamAdapter
from surge.streams.control import AccessController, AccessMatch
from surge.streams.history import DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL, HistoryPolicy
from surge.streams.ops import UpdateResult, check_ops, check_ttl, check_version_arg
from surge.streams.presence import PresenceMember, PresenceSource

if TYPE_CHECKING:
    from surge.steps.config import StreamConfig

__all__ = ["GroupPage", "Stream", "Streams", "UpdateResult", "ValueObserver"]

T = TypeVar("T")

ValueObserver = Callable[[str, str, str, Any], None]
"""Told (stream, group, id, value) for every value ``set`` or ``get`` returns (server plugins)."""


def _check_id(value: object, what: str) -> str:
    problem = id_problem(value, what)
    if problem is not None:
        raise ValidationError(problem, [{"loc": [what], "msg": problem, "type": "value_error"}])
    return value  # type: ignore[return-value]


class GroupPage(list[T], Generic[T]):
    """Items of a group in creation order (a ``list``), plus ``more``: the cursor of the items
    older than these (pass it as ``get_group(..., before=page.more)``), None when there are
    none."""

    __slots__ = ("more",)

    def __init__(self, items: Iterable[T] = (), more: str | None = None) -> None:
        super().__init__(items)
        self.more = more


class Stream:
    """One stream's operations; obtained as ``ctx.streams.<name>``."""

    def __init__(
        self,
        config: StreamConfig,
        adapter: StreamAdapter,
        observe: ValueObserver | None = None,
        presence: PresenceSource | None = None,
    ) -> None:
        self.config = config
        self._presence = presence
        self._observe = observe
        self.name = config.name
        self._schema = config.item_schema
        self._adapter = adapter
        fields = self._schema.field_names
        self._model_has_id = fields is not None and "id" in fields
        if fields is None:
            properties = self._schema.json_schema.get("properties")
            self._schema_has_id = isinstance(properties, dict) and "id" in properties
        else:
            self._schema_has_id = self._model_has_id
        self._default_ttl: float | None = getattr(config, "ttl", None)
        adapter.configure_history(
            self.name,
            HistoryPolicy(
                getattr(config, "history_size", DEFAULT_HISTORY_SIZE),
                getattr(config, "history_ttl", DEFAULT_HISTORY_TTL),
            ),
        )

    def _to_value(self, item: dict[str, Any]) -> Any:
        model = self._schema.model
        if model is None:
            return item
        # model_validate (not model_construct) so nested models come back as models too.
        if self._model_has_id:
            return model.model_validate(item)
        return model.model_validate({k: v for k, v in item.items() if k != "id"})

    async def set(self, group_id: str, id: str, data: Any, *, ttl: float | None = None) -> Any:
        """Create or replace item ``id`` of ``group_id``; returns the stored value.

        ``ttl``: seconds until the item expires and is deleted (default: the stream's
        ``StreamConfig.ttl``; None there too: never).

        Raises:
            ValidationError: the ids, ``data`` or ``ttl`` are invalid; nothing is stored or sent.
        """
        _check_id(group_id, "groupId")
        _check_id(id, "id")
        ttl = check_ttl(ttl)
        value, item = self._schema.validate(data)
        if item.get("id") != id:
            # The key is the item's identity on the wire: it always wins, and is always present.
            item = {**item, "id": id}
            if self._schema.model is None:
                value = item
            elif self._model_has_id:
                value = value.model_copy(update={"id": id})
        await self._adapter.set(
            self.name, group_id, id, item, ttl=self._default_ttl if ttl is None else ttl
        )
        return self._tracked(value, group_id, id)

    async def update(
        self,
        group_id: str,
        id: str,
        ops: list[dict[str, Any]],
        *,
        if_version: int | None = None,
        ttl: float | None = None,
    ) -> UpdateResult[Any]:
        """Apply ``ops`` to the item atomically (see ``surge.streams.ops`` for the op types).

        A missing item starts as ``{}`` and is created if the result is a valid item.
        Subscribers get the usual ``update`` (or ``create``) with the whole item.

        Args:
            if_version: apply only if the item is at this version (``UpdateResult.version`` of
                an earlier update); 0: only if the item does not exist.
            ttl: reset the item's expiry to ``ttl`` seconds from now. Without it the item keeps
                its expiry; an item this update creates gets the stream's ``StreamConfig.ttl``.

        Returns:
            ``UpdateResult`` with ``old_value`` (None if created), ``new_value`` and ``version``;
            the values are built when first read.

        Raises:
            ValidationError: bad ids or ops (``loc`` names the op index), an op that does not fit
                the item, or a result the schema refuses (naming the field); nothing changes.
            ConflictError: ``if_version`` did not match; nothing changes.
        """
        _check_id(group_id, "groupId")
        _check_id(id, "id")
        checked = check_ops(ops)
        if_version = check_version_arg(if_version)
        ttl = check_ttl(ttl)
        updated = await self._adapter.update(
            self.name,
            group_id,
            id,
            checked,
            if_version=if_version,
            ttl=ttl,
            default_ttl=self._default_ttl,
            validate=self._validate_item,
        )
        item = updated.change.item

        def make_old() -> Any:
            old = updated.old
            return None if old is None else self._to_value(old)

        def make_new() -> Any:
            # Shown to the observer when first read: a value nobody reads is nobody's response.
            return self._tracked(self._to_value(item), group_id, id)

        return UpdateResult.lazy(make_old, make_new, updated.change.seq)

    def _validate_item(self, item: dict[str, Any], is_new: bool) -> dict[str, Any]:
        """The stored JSON of an updated item, as ``set`` would store it; raises if invalid."""
        id = item.get("id")
        data = item if self._schema_has_id else {k: v for k, v in item.items() if k != "id"}
        try:
            _, json = self._schema.validate(data)
        except ValidationError as exc:
            if not is_new:
                raise
            raise ValidationError(
                f"no item {id!r} in this group, and the ops do not make a valid one: "
                + exc.message,
                exc.errors,
            ) from exc
        return {**json, "id": id}

    def _tracked(self, value: Any, group_id: str, id: str) -> Any:
        """Show ``value`` to the observer, if there is one."""
        if self._observe is not None:
            self._observe(self.name, group_id, id, value)
        return value

    async def get(self, group_id: str, id: str) -> Any:
        """Return the item, or None when it does not exist."""
        _check_id(group_id, "groupId")
        _check_id(id, "id")
        item = await self._adapter.get(self.name, group_id, id)
        if item is None:
            return None
        return self._tracked(self._to_value(item), group_id, id)

    async def delete(self, group_id: str, id: str) -> Any:
        """Delete the item; returns the deleted value, or None (and nothing is sent) if absent."""
        _check_id(group_id, "groupId")
        _check_id(id, "id")
        change = await self._adapter.delete(self.name, group_id, id)
        return None if change is None else self._to_value(change.item)

    async def get_group(
        self, group_id: str, *, limit: int | None = None, before: str | None = None
    ) -> GroupPage[Any]:
        """Return the group's items in creation order (a list; ``.more`` is None).

        With ``limit``, only the newest ``limit`` items; with ``before`` (the ``.more`` of an
        earlier page), only items older than that page. ``.more`` then names the next older
        page, or is None when there is none::

            page = await ctx.streams.chat.get_group("c1", limit=50)
            while page.more:
                page = await ctx.streams.chat.get_group("c1", limit=50, before=page.more)

        Raises:
            ValidationError: a bad group id, ``limit`` (a positive int) or cursor.
        """
        _check_id(group_id, "groupId")
        snapshot = await self._adapter.get_group(self.name, group_id, limit=limit, before=before)
        return GroupPage([self._to_value(item) for item in snapshot.items], snapshot.more)

    getGroup = get_group  # Motia's spelling (ctx.streams.todo.getGroup)

    async def list_groups(self) -> list[str]:
        """Return the ids of the groups that hold items."""
        return await self._adapter.list_groups(self.name)

    async def send(self, channel: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        """Send an ephemeral event to ``{"groupId": g}`` or ``{"groupId": g, "id": i}``.

        ``event`` is ``{"type": name, "data": any JSON}``. It is delivered to subscribers and
        kept only in the group's history (for clients that resume), never as an item.
        """
        group_id = _check_id(channel.get("groupId", channel.get("group_id")), "groupId")
        item_id = channel.get("id")
        if item_id is not None:
            _check_id(item_id, "id")
        kind = event.get("type")
        if not isinstance(kind, str) or not kind:
            raise ValidationError(
                "event needs a non-empty string 'type'",
                [{"loc": ["type"], "msg": "required string", "type": "missing"}],
            )
        payload = {"type": kind, "data": event.get("data")}
        try:
            orjson.dumps(payload)  # fail here, in the caller, not later in the fan-out
        except TypeError as exc:
            raise ValidationError(
                f"event data is not JSON-serializable: {exc}",
                [{"loc": ["data"], "msg": str(exc), "type": "type_error"}],
            ) from exc
        await self._adapter.send(self.name, group_id, item_id, payload)

    async def presence(self, group_id: str) -> list[PresenceMember]:
        """Who is subscribed to the group, on every instance: ``[{"id": .., "meta"?: ..}]``.

        A member is a user (``StreamConfig.presence_key``) however many tabs it has open, or a
        connection without one. Sorted by id.

        Raises:
            ConfigError: the stream was not configured with ``presence=True``.
            StoreError: the presence storage (Redis) is unavailable.
        """
        _check_id(group_id, "groupId")
        if not getattr(self.config, "presence", False):
            raise ConfigError(
                f"stream {self.name!r} does not track presence: StreamConfig(presence=True)"
            )
        if self._presence is None:
            raise ConfigError(f"stream {self.name!r}: presence needs a running Surge server")
        return await self._presence.members(self.name, group_id)


class Streams(Mapping[str, Stream]):
    """All streams of the project: ``streams.todo`` or ``streams["todo"]``.

    Also the server-side access switch (``surge.streams.control``): ``await
    streams.reauthorize({"userId": "u1"})`` re-runs ``can_access`` for that user's live
    subscriptions on every instance and removes those now denied; ``await streams.revoke(...)``
    closes their connections. (A stream named ``reauthorize`` or ``revoke`` is reached as
    ``streams["revoke"]``.)
    """

    def __init__(
        self, streams: Mapping[str, Stream], access: AccessController | None = None
    ) -> None:
        self._streams = dict(streams)
        self._access = access

    async def reauthorize(self, where: AccessMatch = None) -> int:
        """Re-run ``can_access`` for every live subscription of the matching connections, on
        every instance; each one now denied is removed with a ``STREAM_ACCESS_DENIED`` error
        event (the connection stays open).

        Args:
            where: ``{"field": value, ...}`` matched against the auth context (every instance),
                None for every connection, or a function of the auth context (this instance
                only).

        Returns:
            How many subscriptions this instance removed (other instances act in parallel).

        Raises:
            RuntimeError: not running inside a server (no connections to act on).
            ValueError: a function with a distributed adapter (it cannot reach other instances).
            StoreError: the command could not be published to the other instances.
        """
        return await self._controller().reauthorize(where)

    async def revoke(self, where: AccessMatch = None) -> int:
        """Close the matching connections on every instance with 4003 (access revoked).

        Make ``authenticate`` refuse their tokens too, or the clients reconnect with them.
        ``where`` and errors: as ``reauthorize``. Returns how many this instance closed.
        """
        return await self._controller().revoke(where)

    def _controller(self) -> AccessController:
        if self._access is None:
            raise RuntimeError("reauthorize/revoke need a running Surge server")
        return self._access

    def __getitem__(self, name: str) -> Stream:
        return self._streams[name]

    def __getattr__(self, name: str) -> Stream:
        try:
            return self._streams[name]
        except KeyError:
            known = ", ".join(sorted(self._streams)) or "none"
            raise AttributeError(f"no stream named {name!r} (streams: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._streams)

    def __len__(self) -> int:
        return len(self._streams)
