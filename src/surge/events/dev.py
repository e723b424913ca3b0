"""``POST /__surge/api/emit``: emit a message from outside the app (``surge emit``, the Workbench).

Served only by ``surge dev`` (the Workbench registers it and checks, first, that the request
comes from this machine and not from another site). The body is Motia's emit shape,
``{"topic": t, "data": d, "messageGroupId"?: g}``, as JSON (``content-type: application/json``,
which a cross-site page cannot send without a CORS preflight the Workbench never grants). The
answer is ``{"topic", "traceId", "messageIds", "subscribers"}``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from surge._asgi import BodyTimeout, BodyTooLarge, read_body
from surge.errors import StoreError, ValidationError, error_mapping
from surge.events.system import Background

__all__ = ["EMIT_PATH", "MAX_EMIT_BYTES", "serve_emit"]

logger = logging.getLogger(__name__)

EMIT_PATH = "/__surge/api/emit"
MAX_EMIT_BYTES = 1024 * 1024
BODY_IDLE = 30.0


def _json(status: int, body: Any) -> Response:
    return Response(
        orjson.dumps(body),
        status,
        headers={"cache-control": "no-store"},
        media_type="application/json",
    )


async def serve_emit(background: Background, scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI handler of ``POST /__surge/api/emit`` (the caller has checked where it comes from)."""

    async def _answer(_send: Send, status: int, body: Any) -> None:
        await _json(status, body)(scope, receive, send)

    content_type = Headers(scope=scope).get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        await _answer(send, 415, {"error": "send the message as application/json"})
        return
    try:
        raw = await read_body(receive, limit=MAX_EMIT_BYTES, idle=BODY_IDLE)
    except BodyTooLarge:
        await _answer(send, 413, {"error": f"body larger than {MAX_EMIT_BYTES} bytes"})
        return
    except BodyTimeout:
        await _answer(send, 408, {"error": "request body not received in time"})
        return
    if raw is None:
        return
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        await _answer(send, 400, {"error": f"invalid JSON: {exc}"})
        return
    if not isinstance(event, dict):
        await _answer(send, 400, {"error": 'expected {"topic": ..., "data": ...}'})
        return
    trace_id = uuid.uuid4().hex
    topic = event.get("topic")
    try:
        ids = await background.emit(event, trace_id=trace_id)
    except ValidationError as exc:
        await _answer(
            send, error_mapping(exc).http_status, {"error": exc.message, "errors": exc.errors}
        )
        return
    except StoreError as exc:
        logger.error("emit %r [trace %s] failed: %s", topic, trace_id, exc)
        await _answer(send, error_mapping(exc).http_status, {"error": "queue unavailable"})
        return
    subscribers = background.publisher.subscribers(str(topic))
    logger.info("emitted %r [trace %s] to %s", topic, trace_id, subscribers or "no step")
    await _answer(
        send,
        200,
        {"topic": topic, "traceId": trace_id, "messageIds": ids, "subscribers": subscribers},
    )
