"""Reading an ASGI request body with a byte cap and an idle timeout (every HTTP endpoint's)."""

from __future__ import annotations

import asyncio

from starlette.types import Receive

__all__ = ["BodyTimeout", "BodyTooLarge", "read_body"]


class BodyTooLarge(Exception):
    """The body is larger than the cap."""


class BodyTimeout(Exception):
    """The next piece of the body did not arrive within the idle timeout."""


async def read_body(receive: Receive, *, limit: int, idle: float) -> bytes | None:
    """The whole body, or None when the client went away before sending it.

    Raises:
        BodyTooLarge: more than ``limit`` bytes (reading stops there).
        BodyTimeout: no piece arrived for ``idle`` seconds.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(idle):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout from None
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
