"""Update operations: what ``stream.update(group, id, ops)`` applies to one item, atomically.

Each op is a dict, as in Motia 1.0 / iii::

    {"type": "set", "path": "a.b", "value": v}          # "" replaces the whole item (an object)
    {"type": "merge", "path": "", "value": {...}}       # shallow merge into an object ("" = item)
    {"type": "increment", "path": "n", "by": 1}         # a missing number counts as 0
    {"type": "decrement", "path": "n", "by": 1}
    {"type": "append", "path": "content", "value": "x"} # string concatenation, or list append
    {"type": "remove", "path": "x"}                     # a missing path is a no-op

A path is object keys joined by ``.`` (``""`` is the item itself). Missing objects on the way
are created (``set`` of ``a.b`` on ``{}`` gives ``{"a": {"b": v}}``); walking through a value that
is not an object is an error. Ops apply in order to a copy; any failure leaves the item
unchanged and raises ``ValidationError`` whose ``loc`` is ``["ops", index, ...]``. The key wins
over any ``"id"`` the ops write, as with ``set``.

Every store applies ops with this module (in Python, inside its atomic section): the same ops give
the same item on memory, file and Redis, JSON numbers included. Clients that receive an update as
its ops (protocol.md section 4, "patch") apply them with ``apply_ops`` too, so they reach the
stored item exactly: ``apply_update`` only offers the ops for that when the schema kept what the
ops produced (``is_same_json``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar

import orjson

from surge.errors import ConflictError, ValidationError
from surge.streams.feed import Change

__all__ = [
    "MAX_OPS",
    "OP_TYPES",
    "CheckedOps",
    "ItemValidator",
    "UpdateOp",
    "UpdateResult",
    "Updated",
    "apply_ops",
    "apply_update",
    "check_if_version",
    "check_ops",
    "check_ttl",
    "check_version_arg",
    "is_same_json",
]

V = TypeVar("V")

UpdateOp = Mapping[str, Any]
"""One operation: ``{"type": ..., "path": ..., ...}``."""

ItemValidator = Callable[[dict[str, Any], bool], dict[str, Any]]
"""Given the updated item (with ``"id"``) and whether the update creates it, return the JSON
object to store or raise ``ValidationError``; it must not change the dict it is given. Stores
call it inside their atomic section (the file store: on its writer thread), so it must be quick
and must not do I/O."""

OP_TYPES: Final = frozenset({"set", "merge", "increment", "decrement", "append", "remove"})
MAX_OPS: Final = 1000


class Updated:
    """What an adapter's ``update`` applied: the item before (None: it was created) and the change.

    ``change.seq`` is the item's new version. A store may hand the item before as its stored
    bytes (``old_data``) instead: it is decoded on first use of ``old``, since most callers
    never look at it.
    """

    __slots__ = ("_old", "_old_data", "change")

    def __init__(
        self, old: dict[str, Any] | None, change: Change, *, old_data: bytes | None = None
    ) -> None:
        self._old = old
        self._old_data = old_data
        self.change = change

    @property
    def old(self) -> dict[str, Any] | None:
        """The item before the update (a fresh dict), None when the update created it."""
        if self._old is None and self._old_data is not None:
            decoded: dict[str, Any] = orjson.loads(self._old_data)
            self._old, self._old_data = decoded, None
        return self._old


_UNSET: Any = object()


class UpdateResult(Generic[V]):
    """What ``stream.update`` returns: the value before (None when created) and after, as iii.

    ``old_value`` and ``new_value`` are built on first use (a model validation each): a token
    stream that never reads them does not pay for them.
    """

    __slots__ = ("_make_new", "_make_old", "_new", "_old", "version")

    def __init__(self, old_value: V | None, new_value: V, version: int) -> None:
        self._old: Any = old_value
        self._new: Any = new_value
        self._make_old: Callable[[], V | None] | None = None
        self._make_new: Callable[[], V] | None = None
        self.version = version
        """The item's version after the update; pass it as ``if_version=`` to a later update."""

    @classmethod
    def lazy(
        cls, make_old: Callable[[], V | None], make_new: Callable[[], V], version: int
    ) -> UpdateResult[V]:
        """A result whose values come from ``make_old``/``make_new``, each called once, on use."""
        result: UpdateResult[V] = cls(_UNSET, _UNSET, version)
        result._make_old, result._make_new = make_old, make_new
        return result

    @property
    def old_value(self) -> V | None:
        """The value before the update; None when the update created the item."""
        if self._old is _UNSET and self._make_old is not None:
            self._old, self._make_old = self._make_old(), None
        old: V | None = self._old
        return old

    @property
    def new_value(self) -> V:
        """The value after the update."""
        if self._new is _UNSET and self._make_new is not None:
            self._new, self._make_new = self._make_new(), None
        new: V = self._new
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UpdateResult):
            return NotImplemented
        return (self.old_value, self.new_value, self.version) == (
            other.old_value,
            other.new_value,
            other.version,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable cache, compared by value

    def __repr__(self) -> str:
        return (
            f"UpdateResult(old_value={self.old_value!r}, new_value={self.new_value!r}, "
            f"version={self.version!r})"
        )


class CheckedOps(list[dict[str, Any]]):
    """Ops ``check_ops`` already checked (a list of fresh dicts): checking them again is free,
    so the facade and the store need not both walk them."""

    __slots__ = ()


def _problem(index: int, field: str, msg: str, kind: str = "value_error") -> ValidationError:
    return ValidationError(
        f"ops[{index}]: {msg}", [{"loc": ["ops", index, field], "msg": msg, "type": kind}]
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _split(path: object, index: int, *, allow_root: bool) -> list[str]:
    if not isinstance(path, str):
        raise _problem(index, "path", "path must be a string", "string_type")
    if path == "":
        if not allow_root:
            raise _problem(index, "path", "path must name a field (not the item itself)")
        return []
    parts = path.split(".")
    if any(part == "" for part in parts):
        raise _problem(index, "path", f"path {path!r} has an empty segment")
    return parts


def check_ops(ops: object) -> list[dict[str, Any]]:
    """Check the shape of ``ops`` (before any I/O); return them as a list of plain dicts
    (a ``CheckedOps``, which this returns as is).

    Raises:
        ValidationError: not a non-empty list of known ops; ``loc`` names the op index.
    """
    if type(ops) is CheckedOps:
        return ops
    if isinstance(ops, str | bytes) or not isinstance(ops, Sequence):
        raise ValidationError(
            "ops must be a list of operations",
            [{"loc": ["ops"], "msg": "must be a list", "type": "list_type"}],
        )
    if not ops or len(ops) > MAX_OPS:
        raise ValidationError(
            f"ops must hold 1 to {MAX_OPS} operations, not {len(ops)}",
            [{"loc": ["ops"], "msg": f"1 to {MAX_OPS} operations", "type": "too_short_or_long"}],
        )
    checked = CheckedOps()
    for index, op in enumerate(ops):
        if not isinstance(op, Mapping):
            raise _problem(index, "type", "an operation must be an object", "dict_type")
        kind = op.get("type")
        if kind not in OP_TYPES:
            known = ", ".join(sorted(OP_TYPES))
            raise _problem(index, "type", f"unknown op type {kind!r} (known: {known})")
        if "path" not in op:
            raise _problem(index, "path", "an operation needs a 'path' ('' is the item)", "missing")
        path = op["path"]
        _split(path, index, allow_root=kind in ("set", "merge"))
        if kind in ("set", "merge", "append") and "value" not in op:
            raise _problem(index, "value", f"a {kind} op needs a 'value'", "missing")
        if kind == "set" and path == "" and not isinstance(op["value"], Mapping):
            raise _problem(index, "value", "set of the whole item needs an object", "dict_type")
        if kind == "merge" and not isinstance(op["value"], Mapping):
            raise _problem(index, "value", "merge needs an object 'value'", "dict_type")
        if kind in ("increment", "decrement"):
            by = op.get("by", 1)
            if not _is_number(by) or not math.isfinite(by):
                raise _problem(index, "by", "'by' must be a finite number", "number_type")
        checked.append(dict(op))
    return checked


def _walk(item: dict[str, Any], parts: list[str], index: int, *, create: bool) -> Any:
    """The object holding ``parts[-1]``; None when it is missing and ``create`` is false."""
    node: Any = item
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None and part not in node:
            if not create:
                return None
            child = node[part] = {}
        elif not isinstance(child, dict):
            at = ".".join(parts[: depth + 1])
            raise _problem(index, "path", f"{at!r} is not an object", "path_type")
        node = child
    return node


def apply_ops(item: dict[str, Any] | None, ops: list[dict[str, Any]], id: str) -> dict[str, Any]:
    """Apply checked ``ops`` to ``item`` (None: a missing item starts as ``{}``); mutates ``item``.

    Callers pass a fresh copy (stores decode one from their bytes). Returns the new item with
    ``"id": id``.

    Raises:
        ValidationError: an op does not fit the item (increment of a string, path through a
            non-object, ...); ``loc`` names the op index.
    """
    result: dict[str, Any] = {} if item is None else item
    for index, op in enumerate(ops):
        kind = op["type"]
        # The item gets its own copy of an op's value: a later op must not change the caller's
        # ops (nor a retry's, which applies the same ops again).
        given: Any = _copy(op["value"]) if "value" in op else None
        parts = _split(op["path"], index, allow_root=True)
        if not parts:  # the item itself: set or merge of an object
            value = dict(given)
            result = value if kind == "set" else {**result, **value}
            continue
        node = _walk(result, parts, index, create=kind != "remove")
        if node is None:
            continue  # remove of a missing path
        key = parts[-1]
        path = op["path"]
        if kind == "set":
            node[key] = given
        elif kind == "remove":
            node.pop(key, None)
        elif kind == "merge":
            current = node.get(key)
            if current is None and key not in node:
                node[key] = dict(given)
            elif isinstance(current, dict):
                current.update(given)
            else:
                raise _problem(index, "path", f"cannot merge into {path!r}: not an object")
        elif kind in ("increment", "decrement"):
            by = op.get("by", 1)
            current = node.get(key, 0)
            if not _is_number(current):
                what = type(current).__name__
                raise _problem(index, "path", f"cannot {kind} {path!r}: it is a {what}")
            node[key] = current + by if kind == "increment" else current - by
        else:  # append
            value = given
            current = node.get(key)
            if current is None and key not in node:
                node[key] = value if isinstance(value, str) else [value]
            elif isinstance(current, str):
                if not isinstance(value, str):
                    raise _problem(index, "value", f"append to string {path!r} needs a string")
                node[key] = current + value
            elif isinstance(current, list):
                current.append(value)
            else:
                what = type(current).__name__
                raise _problem(index, "path", f"cannot append to {path!r}: it is a {what}")
    result["id"] = id
    return result


def apply_update(
    item: dict[str, Any] | None,
    ops: list[dict[str, Any]],
    id: str,
    validate: ItemValidator | None,
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """What a store's ``update`` stores: the ops applied to ``item`` (a fresh copy; None:
    missing), then checked by ``validate``.

    Returns:
        The item to store, and the ops a client holding the previous item can apply to reach
        exactly it (the ``Change.ops`` of the update), or None: the update creates the item, or
        the schema changed what the ops produced (a client applying them would differ).

    Raises:
        ValidationError: an op does not fit the item, or ``validate`` refused the result.
    """
    is_new = item is None
    applied = apply_ops(item, ops, id)
    stored = applied if validate is None else validate(applied, is_new)
    if is_new or (stored is not applied and not is_same_json(stored, applied)):
        return stored, None
    return stored, [_wire_op(op) for op in ops]


_WIRE_KEYS: Final = ("type", "path", "value", "by")


def _wire_op(op: dict[str, Any]) -> dict[str, Any]:
    """The op as subscribers get it: only the keys ``apply_ops`` reads, values copied (the
    caller may change its own after ``update`` returned)."""
    return {key: _copy(op[key]) for key in _WIRE_KEYS if key in op}


_IMMUTABLE: Final = frozenset({str, int, float, bool, type(None)})


def _copy(value: Any) -> Any:
    """A deep copy of a JSON value; immutable scalars (the usual token) are their own copy."""
    return value if type(value) in _IMMUTABLE else copy.deepcopy(value)


def is_same_json(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same JSON value, types included (``1`` is not ``1.0``
    nor ``true``, unlike ``==``); object key order does not matter."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(is_same_json(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(map(is_same_json, a, b))
    return bool(a == b)


def check_if_version(if_version: int | None, current: int | None) -> None:
    """Raise ``ConflictError`` unless the item's ``current`` version (None: absent) matches.

    ``if_version=0`` means "only if the item does not exist".
    """
    if if_version is None:
        return
    if if_version == 0 and current is None:
        return
    if current is None or current != if_version:
        raise ConflictError(
            f"version conflict: expected {if_version}, the item is at "
            + ("no version (absent)" if current is None else str(current)),
            expected=if_version,
            actual=current,
        )


def check_version_arg(if_version: object) -> int | None:
    """Validate ``if_version=`` (None or a non-negative int)."""
    if if_version is None:
        return None
    if isinstance(if_version, bool) or not isinstance(if_version, int) or if_version < 0:
        raise ValidationError(
            "if_version must be a non-negative integer",
            [{"loc": ["if_version"], "msg": "non-negative integer", "type": "int_type"}],
        )
    return if_version


def check_ttl(ttl: object) -> float | None:
    """Validate a TTL in seconds (None or a positive finite number)."""
    if ttl is None:
        return None
    if (
        not isinstance(ttl, int | float)
        or isinstance(ttl, bool)
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise ValidationError(
            f"ttl must be a positive number of seconds, not {ttl!r}",
            [{"loc": ["ttl"], "msg": "positive number of seconds", "type": "number_type"}],
        )
    return float(ttl)
