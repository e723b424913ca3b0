"""The state extension point (``StateStore``) and the facade handlers get as ``ctx.state``.

Contract (checked by ``tests/unit/state/test_state_contract.py`` for every store):

- Values are opaque bytes (the facade encodes JSON once) keyed by (group, key).
- ``set`` creates or replaces; a replaced key keeps its place in ``get_group``, which lists the
  group's values in creation order (the Redis store: in no particular order).
- ``delete`` returns the removed value (None when there was none); ``clear`` removes the group.
- A write is acknowledged once it is durable for the store's level (SQLite: committed with
  ``synchronous=FULL``, surviving ``kill -9``).
- Failures are ``StoreError`` (``retryable=True`` when trying again may work).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import orjson
import pydantic

from surge.errors import ValidationError
from surge.protocol.ids import id_problem

__all__ = ["State", "StateStore"]


@runtime_checkable
class StateStore(Protocol):
    """Storage behind ``ctx.state``; see the module docstring for the contract."""

    is_distributed: bool
    """True when every process sharing the store sees the same state (Redis)."""

    async def open(self) -> None:
        """Create or connect the storage; idempotent."""
        ...

    async def close(self) -> None:
        """Release every resource; idempotent."""
        ...

    async def get(self, group: str, key: str) -> bytes | None:
        """The value, or None."""
        ...

    async def set(self, group: str, key: str, value: bytes) -> None:
        """Create or replace the value."""
        ...

    async def delete(self, group: str, key: str) -> bytes | None:
        """Remove the value; return it (None when there was none)."""
        ...

    async def get_group(self, group: str) -> list[bytes]:
        """Every value of the group."""
        ...

    async def clear(self, group: str) -> None:
        """Remove every value of the group."""
        ...


def _default(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _check(value: object, what: str) -> str:
    problem = id_problem(value, what)
    if problem is not None:
        raise ValidationError(problem, [{"loc": [what], "msg": problem, "type": "value_error"}])
    return value  # type: ignore[return-value]


class State:
    """``ctx.state``: ``await get/set/delete(group, key)``, ``get_group``, ``clear``.

    Values are any JSON-able data (pydantic models are stored as their JSON); reads return plain
    JSON values (dicts, lists, strings, numbers). Motia's camelCase ``getGroup`` works too.
    """

    __slots__ = ("store",)

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def get(self, group: str, key: str) -> Any:
        """The value, or None when it was never set."""
        raw = await self.store.get(_check(group, "group"), _check(key, "key"))
        return None if raw is None else orjson.loads(raw)

    async def set(self, group: str, key: str, value: Any) -> Any:
        """Create or replace the value; returns it.

        Raises:
            ValidationError: an id is invalid or ``value`` is not JSON-serializable.
        """
        _check(group, "group")
        _check(key, "key")
        try:
            raw = orjson.dumps(value, default=_default)
        except TypeError as exc:
            raise ValidationError(
                f"state value is not JSON-serializable: {exc}",
                [{"loc": ["value"], "msg": str(exc), "type": "type_error"}],
            ) from exc
        await self.store.set(group, key, raw)
        return value

    async def delete(self, group: str, key: str) -> Any:
        """Remove the value; returns it, or None when there was none."""
        raw = await self.store.delete(_check(group, "group"), _check(key, "key"))
        return None if raw is None else orjson.loads(raw)

    async def get_group(self, group: str) -> list[Any]:
        """Every value of the group."""
        return [orjson.loads(raw) for raw in await self.store.get_group(_check(group, "group"))]

    getGroup = get_group  # Motia's spelling

    async def clear(self, group: str) -> None:
        """Remove every value of the group."""
        await self.store.clear(_check(group, "group"))
