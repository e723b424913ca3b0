"""read_body: the one bounded body reader of every HTTP endpoint (API steps, dev endpoints)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from surge._asgi import BodyTimeout, BodyTooLarge, read_body


def receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if not queue:
            await asyncio.sleep(3600)  # a client that stopped sending
        return queue.pop(0)

    return receive


async def test_chunks_are_joined() -> None:
    receive = receiver(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"c"},
    )
    assert await read_body(receive, limit=10, idle=1) == b"abc"


async def test_over_the_cap_stops_reading() -> None:
    receive = receiver({"type": "http.request", "body": b"x" * 11, "more_body": True})
    with pytest.raises(BodyTooLarge):
        await read_body(receive, limit=10, idle=1)


async def test_a_body_that_stops_coming_times_out() -> None:
    receive = receiver({"type": "http.request", "body": b"x", "more_body": True})
    with pytest.raises(BodyTimeout):
        await read_body(receive, limit=10, idle=0.05)


async def test_a_client_that_went_away_gives_none() -> None:
    assert await read_body(receiver({"type": "http.disconnect"}), limit=10, idle=1) is None
