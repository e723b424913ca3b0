"""Small helpers at the ASGI edge: one place that turns a scope's raw headers into a mapping."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Scope

__all__ = ["request_headers", "route_path"]


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers, lower-case names, latin-1 values (the last of repeated names)."""
    return dict(Headers(scope=scope).items())


def route_path(scope: Scope) -> str:
    """The path below the app's mount point: ``scope["path"]`` less ``root_path`` when it starts
    with it (Starlette's convention for mounted apps: ``Mount("/rt", app)`` keeps the full path
    and puts ``/rt`` in ``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path
