"""Typed configs for streams and API steps, and the normalisation of Motia's plain-dict form.

Users write ``StreamConfig(name=..., schema=Model)`` and ``ApiRouteConfig(name=..., method=...,
path=...)``; Motia's Python steps write dicts (``{"type": "api", "bodySchema": {...}}``). Both end
up as the same frozen dataclasses, with their schemas wrapped in ``surge.streams.schema.Schema``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from surge.errors import ConfigError
from surge.protocol.ids import id_problem
from surge.streams.schema import Schema, schema_from

__all__ = [
    "HTTP_METHODS",
    "ApiRouteConfig",
    "CanAccess",
    "StreamConfig",
    "Subscription",
    "normalize_api_config",
    "normalize_stream_config",
]

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a client asks to join, as ``can_access`` sees it."""

    groupId: str  # the guide's (and the wire's) name
    id: str | None = None

    def __getitem__(self, key: str) -> str | None:
        # Motia's canAccess destructures ``{groupId, id}``; allow ``sub["groupId"]`` too.
        if key == "groupId":
            return self.groupId
        if key == "id":
            return self.id
        raise KeyError(key)

    @property
    def group_id(self) -> str:
        """The group id, snake_case."""
        return self.groupId


CanAccess = Callable[[Subscription, Any], bool | Awaitable[bool]]


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    """A stream: its name (``ctx.streams.<name>``), item schema and access rule."""

    name: str
    schema: Any
    base_config: Mapping[str, Any] = field(default_factory=lambda: {"storageType": "default"})
    can_access: CanAccess | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"stream name {self.name!r} must be a Python identifier")
        problem = id_problem(self.name, "stream name")
        if problem:
            raise ConfigError(problem)
        if self.schema is None:
            raise ConfigError(f"stream {self.name!r} needs a schema")
        if self.can_access is not None and not callable(self.can_access):
            raise ConfigError(f"stream {self.name!r}: can_access must be callable")

    @cached_property
    def item_schema(self) -> Schema:
        """The schema wrapped for validation (built once)."""
        schema = schema_from(self.schema, what=f"stream {self.name!r} schema")
        if schema is None:
            raise ConfigError(f"stream {self.name!r} needs a schema")
        return schema


@dataclass(frozen=True, kw_only=True)
class ApiRouteConfig:
    """An HTTP endpoint served by a step's ``handler(req, ctx)``."""

    name: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] | str
    path: str
    body_schema: Any = None
    response_schema: Mapping[int, Any] | None = None
    query_params: Sequence[Mapping[str, str]] = ()
    emits: Sequence[Any] = ()
    description: str | None = None
    flows: Sequence[str] = ()
    type: str = "api"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("an API step needs a non-empty name")
        method = str(self.method).upper()
        if method not in HTTP_METHODS:
            raise ConfigError(f"step {self.name!r}: method {self.method!r} is not an HTTP method")
        object.__setattr__(self, "method", method)
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ConfigError(f"step {self.name!r}: path {self.path!r} must start with '/'")
        if self.type != "api":
            raise ConfigError(f"step {self.name!r}: only type 'api' steps are supported")


def _pick(raw: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in raw:
            return raw[name]
    return None


def normalize_stream_config(raw: Any) -> StreamConfig:
    """Accept a ``StreamConfig`` or Motia's dict form (``name``, ``schema``, ``baseConfig``)."""
    if isinstance(raw, StreamConfig):
        raw.item_schema  # noqa: B018 - build it once now so a bad schema fails at startup
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config must be a StreamConfig or a dict, got {type(raw).__name__}")
    config = StreamConfig(
        name=raw.get("name"),  # type: ignore[arg-type]
        schema=raw.get("schema"),
        base_config=_pick(raw, "base_config", "baseConfig") or {"storageType": "default"},
        can_access=_pick(raw, "can_access", "canAccess"),
    )
    config.item_schema  # noqa: B018
    return config


def normalize_api_config(raw: Any) -> ApiRouteConfig:
    """Accept an ``ApiRouteConfig`` or Motia's dict form (``bodySchema``, ``responseSchema``)."""
    if isinstance(raw, ApiRouteConfig):
        config = raw
    elif isinstance(raw, Mapping):
        response = _pick(raw, "response_schema", "responseSchema")
        config = ApiRouteConfig(
            name=raw.get("name"),  # type: ignore[arg-type]
            method=raw.get("method", ""),
            path=raw.get("path"),  # type: ignore[arg-type]
            body_schema=_pick(raw, "body_schema", "bodySchema"),
            response_schema={int(k): v for k, v in response.items()} if response else None,
            query_params=_pick(raw, "query_params", "queryParams") or (),
            emits=raw.get("emits") or (),
            description=raw.get("description"),
            flows=raw.get("flows") or (),
            type=raw.get("type", "api"),
        )
    else:
        raise ConfigError(f"config must be an ApiRouteConfig or a dict, got {type(raw).__name__}")
    schema_from(config.body_schema, what=f"step {config.name!r} body_schema")
    for status, schema in (config.response_schema or {}).items():
        schema_from(schema, what=f"step {config.name!r} response_schema[{status}]")
    return config
