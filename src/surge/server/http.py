"""The HTTP step adapter: request -> validated ``ApiRequest`` -> handler -> JSON response.

Errors by who must react: an invalid body is the client's (400 with the validation errors, the
handler is not called), and so is a ``ValidationError`` raised inside the handler by a stream
call (a hostile path id, an invalid item: 400 with the message, one info line, no traceback); a
body that stops arriving is 408 (``Limits.body_timeout``), a larger one 413
(``Limits.max_body_bytes``); any other handler exception is ours (500 with a generic body, the
traceback logged with the trace id); a retryable storage failure is 503.

With ``track_items`` (the Workbench is on), a response whose body *is* a value that ``set``/``get``
returned during the request gets ``x-surge-stream-item: {"streamName","groupId","id"}``; the body
itself is never changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
import pydantic

from surge.config import Limits
from surge.errors import StoreError, ValidationError
from surge.server.logs import CLIENT_MISTAKES
from surge.steps.context import ApiRequest, ApiResponse, FlowContext, StepLogger
from surge.streams.stream import ItemRef, ReturnedItems, track_returned_items

if TYPE_CHECKING:
    from surge.events.system import Background
    from surge.server.runtime import Runtime

__all__ = ["MAX_BODY_BYTES", "STREAM_ITEM_HEADER", "serve_http"]

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = Limits().max_body_bytes
STREAM_ITEM_HEADER = "x-surge-stream-item"


def _default(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    raw = orjson.dumps(body, default=_default) if body is not None else b""
    out = [(b"content-type", b"application/json")] if body is not None else []
    out.extend(
        (k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items()
    )
    return status, raw, out


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTimeout(Exception):
    """The next piece of the body did not arrive within ``Limits.body_timeout``."""


async def _read_body(receive: Any, limit: int, idle: float) -> bytes | None:
    chunks = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(idle):
                message = await receive()
        except TimeoutError:
            raise _BodyTimeout from None
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _query(scope: dict[str, Any]) -> dict[str, str | list[str]]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}


async def serve_http(
    runtime: Runtime,
    scope: dict[str, Any],
    receive: Any,
    send: Any,
    *,
    track_items: bool = False,
    background: Background | None = None,
) -> None:
    """ASGI handler for the project's API steps (``track_items``: mark stream-item bodies;
    ``background``: gives handlers ``ctx.emit`` and ``ctx.state``)."""
    method = scope["method"]
    path = scope["path"]
    found = runtime.registry.match(method, path)
    if found is None:
        await _respond(send, *_json(404, {"error": f"no route for {method} {path}"}))
        return
    if found == "method":
        await _respond(send, *_json(405, {"error": f"method {method} not allowed on {path}"}))
        return
    assert not isinstance(found, str)  # narrowed: "method" handled above
    route, path_params = found
    limits = runtime.config.limits
    try:
        raw = await _read_body(receive, limits.max_body_bytes, limits.body_timeout)
    except _BodyTimeout:
        if CLIENT_MISTAKES.allow():
            logger.info("%s %s: request body not received in time", method, path)
        close = {"connection": "close"}
        await _respond(send, *_json(408, {"error": "request body not received in time"}, close))
        return
    if raw is None:
        limit = limits.max_body_bytes
        close = {"connection": "close"}
        await _respond(send, *_json(413, {"error": f"body larger than {limit} bytes"}, close))
        return
    body: Any = None
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if route.body_schema is not None:
                await _respond(send, *_json(400, {"error": f"invalid JSON body: {exc}"}))
                return
    if route.body_schema is not None:
        try:
            body = route.body_schema.validate_json(body)
        except ValidationError as exc:
            await _respond(
                send, *_json(400, {"error": "invalid request body", "errors": exc.errors})
            )
            return
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    trace_id = uuid.uuid4().hex
    request = ApiRequest(
        body=body,
        path_params=path_params,
        query_params=_query(scope),
        headers=headers,
        raw_body=raw,
        method=method,
        path=path,
    )
    if background is not None:  # ctx.emit and ctx.state (event steps, issue 11)
        ctx = background.context(route.config.name, route.config.emits, route.source, trace_id)
    else:
        ctx = FlowContext(StepLogger(route.config.name, trace_id), runtime.streams, trace_id)
    trace_header = {"x-trace-id": trace_id}
    try:
        tracking: contextlib.AbstractContextManager[ReturnedItems | None] = (
            track_returned_items() if track_items else contextlib.nullcontext()
        )
        with tracking as returned:
            result = await route.handler(request, ctx)
        status, payload, extra = _response_parts(result)
        if returned is not None:
            extra = _mark_stream_item(extra, returned.origin_of(payload))
        response = _json(status, payload, {**trace_header, **extra})
    except ValidationError as exc:
        # A stream call refused the handler's data (often a client-chosen id): the client's to fix.
        if CLIENT_MISTAKES.allow():
            logger.info("step %s [trace %s]: 400: %s", route.config.name, trace_id, exc.message)
        body = {"error": exc.message, "errors": exc.errors, "traceId": trace_id}
        response = _json(400, body, trace_header)
    except StoreError as exc:
        logger.error("step %s [trace %s]: storage failed: %s", route.config.name, trace_id, exc)
        status = 503 if exc.retryable else 500
        message = "storage unavailable, retry later" if exc.retryable else "internal server error"
        response = _json(status, {"error": message, "traceId": trace_id}, trace_header)
    except Exception:
        logger.exception("step %s [trace %s] failed", route.config.name, trace_id)
        response = _json(500, {"error": "internal server error", "traceId": trace_id}, trace_header)
    await _respond(send, *response)


def _mark_stream_item(headers: Mapping[str, str], ref: ItemRef | None) -> Mapping[str, str]:
    if ref is None:
        return headers
    # json.dumps escapes non-ASCII: header values must be latin-1.
    value = json.dumps(
        {"streamName": ref.streamName, "groupId": ref.groupId, "id": ref.id}, separators=(",", ":")
    )
    return {**headers, STREAM_ITEM_HEADER: value}


def _response_parts(result: Any) -> tuple[int, Any, Mapping[str, str]]:
    if isinstance(result, ApiResponse):
        return result.status, result.body, result.headers
    if isinstance(result, Mapping) and "status" in result:
        return int(result["status"]), result.get("body"), result.get("headers") or {}
    if result is None:
        return 204, None, {}
    raise TypeError(f"handler returned {type(result).__name__}; return ApiResponse(status, body)")
