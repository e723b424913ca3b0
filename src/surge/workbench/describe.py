"""What the Workbench shows: the API steps and the streams, as plain JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from surge.streams.schema import schema_from

if TYPE_CHECKING:
    from surge.server.runtime import Runtime
    from surge.steps.registry import ApiRoute, Registry

__all__ = ["describe_endpoints", "describe_streams"]

_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _source(path: Path | None, root: Path | None) -> str | None:
    if path is None:
        return None
    if root is not None and path.is_relative_to(root):
        return str(path.relative_to(root))
    return str(path)


def _endpoint(route: ApiRoute, root: Path | None) -> dict[str, Any]:
    config = route.config
    responses: dict[str, Any] = {}
    for status, raw in sorted((config.response_schema or {}).items()):
        schema = schema_from(raw, what=f"step {config.name!r} response_schema[{status}]")
        responses[str(status)] = schema.json_schema if schema is not None else None
    return {
        "name": config.name,
        "method": config.method,
        "path": config.path,
        "description": config.description,
        "pathParams": list(route.param_names),
        "queryParams": [
            {"name": str(q.get("name", "")), "description": str(q.get("description", ""))}
            for q in config.query_params
        ],
        "bodySchema": route.body_schema.json_schema if route.body_schema is not None else None,
        "responseSchemas": responses,
        "source": _source(route.source, root),
    }


def describe_endpoints(registry: Registry, root: Path | None = None) -> list[dict[str, Any]]:
    """Every API step, sorted by path then method; source paths relative to ``root``."""
    routes = sorted(
        registry.routes,
        key=lambda r: (r.config.path, _METHOD_ORDER.index(r.config.method)),
    )
    return [_endpoint(route, root) for route in routes]


async def describe_streams(runtime: Runtime) -> list[dict[str, Any]]:
    """Every stream with its item schema and current groups, sorted by name.

    Raises:
        StoreError: listing a stream's groups failed.
    """
    registry = runtime.registry
    out = []
    for name in sorted(registry.streams):
        config = registry.streams[name]
        out.append(
            {
                "name": name,
                "schema": config.item_schema.json_schema,
                "groups": sorted(await runtime.adapter.list_groups(name)),
                "hasAccessRule": config.can_access is not None,
            }
        )
    return out
