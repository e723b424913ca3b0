"""Small helpers at the ASGI edge: the one place that decodes a scope's raw headers and query."""

from __future__ import annotations

from starlette.types import Scope

__all__ = ["query_string", "request_headers", "route_path"]


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers, lower-case names, latin-1 values (the last of repeated names)."""
    # ASGI servers send the names lower-cased already (as Starlette's Headers assumes).
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def query_string(scope: Scope) -> str:
    """The request's raw query string (``a=1&b=2``), latin-1 decoded as ASGI servers send it."""
    raw: bytes = scope.get("query_string", b"")
    return raw.decode("latin-1")


def route_path(scope: Scope) -> str:
    """The path below the app's mount point: ``scope["path"]`` less ``root_path`` when it starts
    with it (Starlette's convention for mounted apps: ``Mount("/rt", app)`` keeps the full path
    and puts ``/rt`` in ``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path
