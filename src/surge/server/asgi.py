"""Small helpers at the ASGI edge: one place that turns a scope's raw headers into a mapping."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Scope

__all__ = ["request_headers"]


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers, lower-case names, latin-1 values (the last of repeated names)."""
    return dict(Headers(scope=scope).items())
