"""The HTTP step adapter: request -> validated ``ApiRequest`` -> handler -> JSON response.

Errors by who must react: an invalid body is the client's (400 with the validation errors, the
handler is not called), and so is a ``ValidationError`` raised inside the handler by a stream
call (a hostile path id, an invalid item: 400 with the message, one info line, no traceback); a
body that stops arriving is 408 (``Limits.body_timeout``), a larger one 413
(``Limits.max_body_bytes``); any other handler exception is ours (500 with a generic body, the
traceback logged with the trace id); a retryable storage failure is 503.

Plugins' response hooks (``ServerExtensions.response_hooks``) run around each handler call and may
add response headers from its body (the Workbench marks stream items); the body itself is never
changed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
import pydantic
from starlette.types import Receive, Scope, Send

import surge.tracing as tracing
from surge._asgi import BodyTimeout, BodyTooLarge, read_body
from surge.config import Limits
from surge.errors import StoreError, ValidationError, error_mapping
from surge.log_context import STEP, TRACE_ID
from surge.server.asgi import query_string, request_headers, route_path
from surge.server.logs import CLIENT_MISTAKES
from surge.steps.context import ApiRequest, FlowContext, StepLogger
from surge.steps.middleware import Middleware, run_with_middleware
from surge.steps.registry import Handler, MethodNotAllowed
from surge.steps.responses import BadResponse, response_parts

if TYPE_CHECKING:
    from surge.events.system import Background
    from surge.server.runtime import Runtime

__all__ = ["MAX_BODY_BYTES", "serve_http"]

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = Limits().max_body_bytes


def _default(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_JSON = b"application/json"
# Statuses whose answer has no body, hence no content-length (as Starlette's Response does).
_NO_BODY = frozenset({204, 304})


class _Answer:
    """One JSON answer: the status, its raw headers and body, sent as two ASGI messages.

    What ``starlette.responses.Response(raw, status, headers, "application/json")`` sends, built
    without its per-answer objects: this is every API request's last step.
    """

    __slots__ = ("body", "headers", "status_code")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status
        self.body = body
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code, "headers": self.headers}
        await send(start)
        await send({"type": "http.response.body", "body": self.body})


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> _Answer:
    if body is None:
        raw = b""
    elif isinstance(body, pydantic.BaseModel):
        # pydantic's own JSON: the bytes orjson makes of model_dump(mode="json"), without the dict
        raw = body.__pydantic_serializer__.to_json(body)
    else:
        raw = orjson.dumps(body, default=_default)
    listed = (
        [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if headers
        else []
    )
    names = {name for name, _ in listed}
    if b"content-length" not in names and not (status < 200 or status in _NO_BODY):
        listed.append((b"content-length", str(len(raw)).encode()))
    if body is not None and b"content-type" not in names:
        listed.append((b"content-type", _JSON))
    return _Answer(status, raw, listed)


def _query(scope: Scope) -> dict[str, str | list[str]]:
    raw = query_string(scope)
    if not raw:
        return {}
    parsed = parse_qs(raw, keep_blank_values=True)
    return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}


async def serve_http(
    runtime: Runtime,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    background: Background | None = None,
) -> None:
    """ASGI handler for the project's API steps (``background``: gives handlers ``ctx.emit`` and
    ``ctx.state``)."""
    method = scope["method"]
    path = route_path(scope)
    found = runtime.registry.match(method, path)
    if found is None:
        await _json(404, {"error": f"no route for {method} {path}"})(scope, receive, send)
        return
    if isinstance(found, MethodNotAllowed):
        allow = {"allow": ", ".join(sorted(set(found.allowed)))}
        response = _json(405, {"error": f"method {method} not allowed on {path}"}, allow)
        await response(scope, receive, send)
        return
    route, path_params = found.route, found.path_params
    limits = runtime.config.limits
    close = {"connection": "close"}
    try:
        raw = await read_body(receive, limit=limits.max_body_bytes, idle=limits.body_timeout)
    except BodyTooLarge:
        message = f"body larger than {limits.max_body_bytes} bytes"
        await _json(413, {"error": message}, close)(scope, receive, send)
        return
    except BodyTimeout:
        if CLIENT_MISTAKES.allow():
            logger.info("%s %s: request body not received in time", method, path)
        response = _json(408, {"error": "request body not received in time"}, close)
        await response(scope, receive, send)
        return
    if raw is None:
        return  # the client went away: nobody to answer
    body: Any = None
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if route.body_schema is not None:
                await _json(400, {"error": f"invalid JSON body: {exc}"})(scope, receive, send)
                return
    if route.body_schema is not None:
        try:
            body = route.body_schema.validate_body(raw, body)
        except ValidationError as exc:
            invalid = {"error": "invalid request body", "errors": exc.errors}
            await _json(400, invalid)(scope, receive, send)
            return
    headers = request_headers(scope)
    tracer = tracing.TRACER
    span = None
    if tracer is None:
        trace_id = os.urandom(16).hex()  # 32 hex digits, as a W3C trace id
    else:  # the span's trace id is the flow's: x-trace-id finds the trace
        span = tracer.request(route.config.name, method, route.config.path, headers)
        trace_id = span.trace_id
    # On every line logged while this request is handled (reset below; uvicorn runs each
    # request in a task of its own, so an exception leaving early leaks nothing either).
    log_tokens = (TRACE_ID.set(trace_id), STEP.set(route.config.name))
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
    started = time.perf_counter()
    failure: BaseException | None = None  # what a 5xx came from (for the span)
    try:
        extensions = runtime.extensions
        chain = (*runtime.config.middleware, *route.config.middleware)
        if extensions.response_hooks:
            with extensions.around_response() as headers_for:
                result = await _call(route.handler, chain, request, ctx)
                status, payload, extra = response_parts(result, route.config.response_validators)
                extra = {**extra, **headers_for(payload)}
        else:
            result = await _call(route.handler, chain, request, ctx)
            status, payload, extra = response_parts(result, route.config.response_validators)
        response = _json(status, payload, {**trace_header, **extra})
    except ValidationError as exc:
        # A stream call refused the handler's data (often a client-chosen id): the client's to fix.
        if CLIENT_MISTAKES.allow():
            logger.info("step %s [trace %s]: 400: %s", route.config.name, trace_id, exc.message)
        body = {"error": exc.message, "errors": exc.errors, "traceId": trace_id}
        response = _json(error_mapping(exc).http_status, body, trace_header)
    except BadResponse as exc:  # the handler broke its step's contract: ours, one line
        failure = exc
        logger.error("step %s [trace %s]: %s", route.config.name, trace_id, exc)
        response = _json(500, {"error": "internal server error", "traceId": trace_id}, trace_header)
    except StoreError as exc:
        failure = exc
        logger.error("step %s [trace %s]: storage failed: %s", route.config.name, trace_id, exc)
        status = error_mapping(exc).http_status
        message = "storage unavailable, retry later" if status == 503 else "internal server error"
        response = _json(status, {"error": message, "traceId": trace_id}, trace_header)
    except Exception as exc:
        failure = exc
        logger.exception("step %s [trace %s] failed", route.config.name, trace_id)
        response = _json(500, {"error": "internal server error", "traceId": trace_id}, trace_header)
    if span is not None:
        span.end(response.status_code, failure)
    await response(scope, receive, send)
    observers = runtime.extensions.request_observers
    if observers:
        elapsed = time.perf_counter() - started
        for observe in observers:
            observe(route.config.name, response.status_code, elapsed)
    STEP.reset(log_tokens[1])
    TRACE_ID.reset(log_tokens[0])


async def _call(handler: Handler, chain: tuple[Middleware, ...], request: Any, ctx: Any) -> Any:
    if not chain:
        return await handler(request, ctx)
    return await run_with_middleware(chain, handler, request, ctx)
