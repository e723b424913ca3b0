"""Middleware around API handlers, in Motia's form: ``async def mw(req, ctx, next)``.

``next()`` runs the rest of the chain (the next middleware, then the handler) and returns its
response; a middleware may return its own response instead (auth, rate limits), change the request
before, or the response after (timing, headers). The chain is ``Config.middleware`` (every API
step) then the step's own ``middleware``, in order. Errors a middleware raises are handled like
the handler's (a ``ValidationError`` is a 400, anything else a 500 with the trace id).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from surge.steps.strict import FieldError

__all__ = ["Middleware", "check_middleware", "run_with_middleware"]

Middleware = Callable[[Any, Any, Callable[[], Awaitable[Any]]], Awaitable[Any]]


def check_middleware(value: Any, step: str) -> tuple[Middleware, ...]:
    """``value`` as a tuple of middleware; a ``ConfigError`` (``FieldError``) naming the problem."""
    if value is None:
        return ()
    if callable(value) or isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise FieldError(
            f"step {step!r}: middleware must be a list of async functions (req, ctx, next)",
            field="middleware",
        )
    for index, entry in enumerate(value):
        name = getattr(entry, "__name__", repr(entry))
        if not inspect.iscoroutinefunction(entry) and not inspect.iscoroutinefunction(
            getattr(entry, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):
            raise FieldError(
                f"step {step!r}: middleware[{index}] {name} must be an async function "
                "(async def mw(req, ctx, next))",
                field="middleware",
            )
        try:
            inspect.signature(entry).bind(None, None, None)
        except TypeError:
            raise FieldError(
                f"step {step!r}: middleware[{index}] {name} must take (req, ctx, next)",
                field="middleware",
            ) from None
    return tuple(value)


async def run_with_middleware(
    chain: Sequence[Middleware],
    handler: Callable[[Any, Any], Awaitable[Any]],
    req: Any,
    ctx: Any,
) -> Any:
    """Run ``chain`` then ``handler``; what the outermost returns is the response."""

    async def call(index: int) -> Any:
        if index == len(chain):
            return await handler(req, ctx)
        return await chain[index](req, ctx, lambda: call(index + 1))

    return await call(0)
