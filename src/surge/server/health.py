"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it should get traffic).

Ready means: the lifespan finished starting (storage and queues open, steps loaded), no drain has
begun, and the storage adapter, if it says so (an optional ``is_ready`` attribute with a
``not_ready_reason``: the Redis adapter's feed subscription is confirmed), is usable. Not ready
is a 503 whose body says why, so a load balancer's health check and a human read the same answer.
A project's own route at either path wins over these.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["HEALTH_PATHS", "serve_health"]

HEALTH_PATHS = ("/healthz", "/readyz")


async def serve_health(
    path: str, readiness: Callable[[], str | None], scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer ``/healthz`` or ``/readyz``; ``readiness()`` is None when ready, else the reason."""
    if path == "/healthz":
        status, body = 200, {"status": "alive"}
    else:
        reason = readiness()
        status, body = (
            (200, {"status": "ready"})
            if reason is None
            else (
                503,
                {
                    "status": "not ready",
                    "reason": reason,
                },
            )
        )
    headers = {"cache-control": "no-store"}
    response = Response(orjson.dumps(body), status, headers, media_type="application/json")
    await response(scope, receive, send)
