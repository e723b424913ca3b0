"""The Workbench's JSON about background work: flows, messages, dead letters, step logs.

- ``GET /__surge/api/flows``: ``describe_flows`` of the registry being served.
- ``GET /__surge/api/messages[?step=&trace=&limit=]``: recent messages from the delivery ring
  buffer (``DeliveryLog``) with their status, plus ``queues``: ``MessageQueue.stats`` of every
  event step (``ready``, ``delayed``, ``inFlight``, ``dead``).
- ``GET /__surge/api/dead-letters[?step=]``: ``dead_letters()`` of every event step, newest first.
- ``POST /__surge/api/dead-letters/replay`` and ``/discard`` with ``{"step", "messageId"}``
  (``application/json``): ``MessageQueue.replay``/``discard``; 404 for an unknown dead letter.
- ``GET /__surge/api/logs[?trace=&step=&limit=]``: recent ``ctx.logger`` lines (``LogBook``).

Every request must name this machine in ``Host`` (DNS rebinding), and the POSTs must come from
the Workbench's own origin, like ``POST /__surge/api/emit``: a refusal is 403.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeGuard
from urllib.parse import parse_qs

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from surge._asgi import BodyTimeout, BodyTooLarge, read_body
from surge.errors import StoreError
from surge.queues.base import MAX_NAME_LENGTH
from surge.server.asgi import request_headers, route_path
from surge.workbench.access import is_local_host, is_same_origin
from surge.workbench.activity import DeliveryLog
from surge.workbench.flows import describe_flows
from surge.workbench.logbook import LogBook

if TYPE_CHECKING:
    from surge.events.system import Background
    from surge.server.runtime import Runtime

__all__ = ["MAX_ACTION_BYTES", "PATHS", "EventsApi"]

logger = logging.getLogger(__name__)

_API: Final = "/__surge/api/"
FLOWS: Final = _API + "flows"
MESSAGES: Final = _API + "messages"
DEAD_LETTERS: Final = _API + "dead-letters"
REPLAY: Final = DEAD_LETTERS + "/replay"
DISCARD: Final = DEAD_LETTERS + "/discard"
LOGS: Final = _API + "logs"
PATHS: Final = frozenset({FLOWS, MESSAGES, DEAD_LETTERS, REPLAY, DISCARD, LOGS})
MAX_ACTION_BYTES: Final = 64 * 1024
_MAX_LIMIT: Final = 1000
_DEAD_LETTER_LIMIT: Final = 100
_JSON_HEADERS: Final = {"cache-control": "no-store"}


class EventsApi:
    """ASGI app of the endpoints above; ``claims`` is its plugin route's test."""

    def __init__(
        self,
        runtime: Runtime,
        background: Background,
        deliveries: DeliveryLog,
        logbook: LogBook,
        project_dir: Path | None = None,
    ) -> None:
        self.runtime = runtime
        self.background = background
        self.deliveries = deliveries
        self.logbook = logbook
        self.project_dir = project_dir

    def claims(self, scope: Scope) -> bool:
        """True for the paths this app serves (any method: a wrong one gets 405)."""
        return route_path(scope) in PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request (see the module docstring)."""
        path = route_path(scope)
        method: str = scope["method"]
        headers = request_headers(scope)
        if not is_local_host(headers, self.runtime.config.workbench_hosts):
            logger.warning(
                "workbench %s refused: Host %r is not this machine", path, headers.get("host")
            )
            await _answer(scope, send, {"error": "the workbench is for this machine only"}, 403)
            return
        if path in (REPLAY, DISCARD):
            if method != "POST":
                await _answer(scope, send, {"error": f"use POST on {path}"}, 405, allow="POST")
            elif not is_same_origin(headers):
                logger.warning("workbench %s refused: cross-origin request", path)
                await _answer(scope, send, {"error": "same-origin pages only"}, 403)
            else:
                status, result = await self._act(path, headers, receive)
                await _answer(scope, send, result, status)
            return
        if method not in ("GET", "HEAD"):
            await _answer(scope, send, {"error": f"use GET on {path}"}, 405, allow="GET, HEAD")
            return
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        try:
            if path == FLOWS:
                registry = self.runtime.registry
                body: Any = describe_flows(registry, self.project_dir, time.time())
            elif path == MESSAGES:
                body = await self._messages(query)
            elif path == DEAD_LETTERS:
                body = {"deadLetters": await self._dead_letters(query.get("step"))}
            else:
                lines = self.logbook.lines(
                    trace_id=query.get("trace") or None,
                    step=query.get("step") or None,
                    limit=_limit(query),
                )
                body = {"logs": lines, "capacity": self.logbook.capacity}
        except StoreError as exc:
            logger.error("workbench %s: the queue failed: %s", path, exc)
            await _answer(scope, send, {"error": "queue unavailable, retry later"}, 503)
            return
        await _answer(scope, send, body)

    def _event_steps(self, only: str | None = None) -> list[str]:
        names = [step.name for step in self.runtime.registry.events]
        return [n for n in names if n == only] if only else names

    async def _messages(self, query: dict[str, str]) -> dict[str, Any]:
        queue = self.background.queue
        queues: dict[str, Any] = {}
        for name in self._event_steps():
            stats = await queue.stats(name)
            queues[name] = {
                "ready": stats.ready,
                "delayed": stats.delayed,
                "inFlight": stats.in_flight,
                "dead": stats.dead,
            }
        messages = self.deliveries.messages(
            step=query.get("step") or None,
            trace_id=query.get("trace") or None,
            limit=_limit(query),
        )
        return {"messages": messages, "queues": queues, "capacity": self.deliveries.capacity}

    async def _dead_letters(self, step: str | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name in self._event_steps(step):
            for dead in await self.background.queue.dead_letters(name, limit=_DEAD_LETTER_LIMIT):
                envelope = dead.envelope
                out.append(
                    {
                        "step": dead.queue,
                        "messageId": dead.message_id,
                        "topic": envelope.topic,
                        "traceId": envelope.trace_id,
                        "groupId": envelope.group_id,
                        "data": envelope.data,
                        "attempts": dead.attempts,
                        "error": dead.error,
                        "failedAt": dead.failed_at,
                    }
                )
        out.sort(key=lambda d: d["failedAt"], reverse=True)
        return out

    async def _act(
        self, path: str, headers: dict[str, str], receive: Receive
    ) -> tuple[int, dict[str, Any]]:
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return 415, {"error": "send {step, messageId} as application/json"}
        try:
            raw = await read_body(receive, limit=MAX_ACTION_BYTES, idle=30.0)
        except BodyTooLarge:
            return 413, {"error": f"body larger than {MAX_ACTION_BYTES} bytes"}
        except BodyTimeout:
            return 408, {"error": "request body not received in time"}
        if raw is None:
            return 400, {"error": "the client went away"}
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return 400, {"error": f"invalid JSON: {exc}"}
        step = request.get("step") if isinstance(request, dict) else None
        message_id = request.get("messageId") if isinstance(request, dict) else None
        if not _is_name(step) or not _is_name(message_id):
            return 400, {"error": 'expected {"step": "<event step>", "messageId": "<id>"}'}
        queue = self.background.queue
        try:
            # Found before acting: the row in the messages view needs the topic and trace id.
            dead = next(
                (
                    d
                    for d in await queue.dead_letters(step, limit=_MAX_LIMIT)
                    if d.message_id == message_id
                ),
                None,
            )
            if path == REPLAY:
                done, kind = await queue.replay(step, message_id), "replayed"
            else:
                done, kind = await queue.discard(step, message_id), "discarded"
        except StoreError as exc:
            logger.error("workbench: %s of %s/%s failed: %s", path, step, message_id, exc)
            return 503, {"error": "queue unavailable, retry later"}
        if not done:
            return 404, {"error": f"no dead letter {message_id!r} in step {step!r}"}
        topic = dead.envelope.topic if dead is not None else ""
        trace_id = dead.envelope.trace_id if dead is not None else ""
        self.deliveries.note(kind, step, message_id, topic=topic, trace_id=trace_id)
        logger.info(
            "workbench: %s dead letter %s of step %s [trace %s]", kind, message_id, step, trace_id
        )
        return 200, {"step": step, "messageId": message_id, kind: True}


def _is_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH and "\0" not in value


def _limit(query: dict[str, str]) -> int:
    try:
        return max(1, min(_MAX_LIMIT, int(query.get("limit", "200"))))
    except ValueError:
        return 200


async def _answer(
    scope: Scope, send: Send, body: Any, status: int = 200, *, allow: str | None = None
) -> None:
    headers = dict(_JSON_HEADERS)
    if allow is not None:
        headers["allow"] = allow
    response = Response(orjson.dumps(body), status, headers, media_type="application/json")
    if scope["method"] == "HEAD":
        response.body = b""  # the content-length stays the one of the GET
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}
