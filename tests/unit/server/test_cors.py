"""``surge.server.cors.Cors`` answers as Starlette's ``CORSMiddleware`` does, header for header,
with and without an ``Origin``, for open and listed origins, preflights and existing ``Vary``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from surge.server.cors import Cors, vary_origin

Headers = list[tuple[bytes, bytes]]


def _app(answer_headers: Headers) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(answer_headers)})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def _answer(app: ASGIApp, method: str, headers: Headers) -> list[Message]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": "/todo",
        "headers": headers,
        "query_string": b"",
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _both(origins: Sequence[str], answer_headers: Headers) -> tuple[ASGIApp, ASGIApp]:
    ours = Cors(_app(answer_headers), origins=origins, expose=["x-trace-id"])
    starlettes = CORSMiddleware(
        _app(answer_headers),
        allow_origins=list(origins),
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["x-trace-id"],
    )
    return ours, starlettes


REQUESTS: list[tuple[str, Headers]] = [
    ("POST", [(b"host", b"h"), (b"content-type", b"application/json")]),
    ("GET", [(b"host", b"h"), (b"origin", b"http://localhost:5173")]),
    ("GET", [(b"origin", b"http://evil.example")]),
    (
        "OPTIONS",
        [
            (b"origin", b"http://localhost:5173"),
            (b"access-control-request-method", b"POST"),
            (b"access-control-request-headers", b"content-type"),
        ],
    ),
    ("OPTIONS", [(b"host", b"h")]),
]
ANSWERS: list[Headers] = [
    [(b"content-type", b"application/json")],
    [(b"vary", b"Accept"), (b"x-a", b"1"), (b"vary", b"Cookie")],
    [],
]


@pytest.mark.parametrize("origins", [["*"], ["http://localhost:5173"]])
@pytest.mark.parametrize(("method", "headers"), REQUESTS)
@pytest.mark.parametrize("answer_headers", ANSWERS)
async def test_every_answer_is_starlettes(
    origins: list[str], method: str, headers: Headers, answer_headers: Headers
) -> None:
    ours, starlettes = _both(origins, answer_headers)
    assert await _answer(ours, method, headers) == await _answer(starlettes, method, headers)


def test_vary_origin_joins_every_vary_into_the_first_and_leaves_the_input_alone() -> None:
    headers = [(b"vary", b"Accept"), (b"x-a", b"1"), (b"vary", b"Cookie")]
    assert vary_origin(headers) == [(b"vary", b"Accept, Cookie, Origin"), (b"x-a", b"1")]
    assert headers == [(b"vary", b"Accept"), (b"x-a", b"1"), (b"vary", b"Cookie")]
    assert vary_origin([]) == [(b"vary", b"Origin")]
