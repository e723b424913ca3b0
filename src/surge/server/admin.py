"""A read-only admin view for production, as a server plugin: ``/__surge/admin/``.

Off unless ``$SURGE_ADMIN_TOKEN`` is set (at least ``MIN_TOKEN_LENGTH`` characters; a shorter
one is a ``ConfigError`` at startup, not a weak lock). Every request must carry the token, as
``Authorization: Bearer <token>`` (scripts) or HTTP Basic with the token as the password (the
browser asks for it on the 401); it is compared in constant time (``hmac.compare_digest``) and
never logged. Anything else is a 401; with the plugin off, its paths are the app's (a 404).

What it shows, for this instance (``GET /__surge/admin/api`` as JSON, ``GET /__surge/admin/`` as
a small HTML page refreshing itself every 5 s, no script): readiness, connections (open, opened,
closed by code, the ones holding the most subscriptions), subscriptions per stream, the groups
with the most subscribers, the event queues' states. Group ids appear here and nowhere in the
metrics. Nothing can be changed from it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import html
import os
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from surge.errors import ConfigError
from surge.server.asgi import request_headers, route_path
from surge.server.plugins import HttpRoute
from surge.server.stats import STATS
from surge.streams.timed import innermost

if TYPE_CHECKING:
    from surge.server.app import SurgeApp

__all__ = ["ADMIN_PATH", "ADMIN_TOKEN_ENV", "MIN_TOKEN_LENGTH", "AdminPlugin", "admin_token"]

ADMIN_TOKEN_ENV = "SURGE_ADMIN_TOKEN"
ADMIN_PATH = "/__surge/admin/"
MIN_TOKEN_LENGTH = 16
TOP = 20
_QUEUE_TIMEOUT_S = 2.0
_CHALLENGE = {"www-authenticate": 'Basic realm="Surge admin", charset="UTF-8"'}
_NO_STORE = {"cache-control": "no-store"}


def admin_token() -> str | None:
    """``$SURGE_ADMIN_TOKEN``, or None when the admin view is off.

    Raises:
        ConfigError: the token is set but shorter than ``MIN_TOKEN_LENGTH``.
    """
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if not token:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"${ADMIN_TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters "
            "(e.g. `openssl rand -hex 32`)"
        )
    return token


def _offered(headers: dict[str, str]) -> bytes | None:
    """The token the request offers (Bearer, or a Basic password), if any."""
    value = headers.get("authorization", "")
    scheme, _, credentials = value.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return credentials.strip().encode()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


class AdminPlugin:
    """Installs the admin view (see the module docstring)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._started = time.time()

    def install(self, app: SurgeApp) -> None:
        """Register the route, ahead of every other plugin's (the Workbench owns /__surge/)."""
        self.app = app

        def claims(scope: Scope) -> bool:
            path = route_path(scope)
            return path == ADMIN_PATH[:-1] or path.startswith(ADMIN_PATH)

        app.runtime.extensions.routes.insert(0, HttpRoute(claims, self))

    def _is_allowed(self, scope: Scope) -> bool:
        offered = _offered(request_headers(scope))
        # Constant time in the content: the time taken tells nothing about how much matched.
        return hmac.compare_digest(offered or b"", self._token) and offered is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._is_allowed(scope):
            body = orjson.dumps({"error": "the admin view needs its token"})
            headers = {**_CHALLENGE, **_NO_STORE}
            await Response(body, 401, headers, media_type="application/json")(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            body = orjson.dumps({"error": "the admin view is read-only"})
            headers = {"allow": "GET, HEAD", **_NO_STORE}
            await Response(body, 405, headers, media_type="application/json")(scope, receive, send)
            return
        path = route_path(scope)
        if path in (ADMIN_PATH + "api", ADMIN_PATH + "api/"):
            body = orjson.dumps(await self.overview())
            response = Response(body, 200, _NO_STORE, media_type="application/json")
        elif path in (ADMIN_PATH, ADMIN_PATH[:-1]):
            page = _page(await self.overview())
            response = Response(page, 200, _NO_STORE, media_type="text/html; charset=utf-8")
        else:
            body = orjson.dumps({"error": "no such admin page", "pages": [ADMIN_PATH, "api"]})
            response = Response(body, 404, _NO_STORE, media_type="application/json")
        await response(scope, receive, send)

    async def overview(self) -> dict[str, Any]:
        """Everything the view shows, as JSON-able data."""
        app = self.app
        runtime = app.runtime
        reason = app.readiness()
        connections = list(runtime.connections)
        busiest = sorted(connections, key=lambda c: len(c.session.subscriptions), reverse=True)
        closed = {str(code): count for code, count in sorted(STATS.closed_by_code.items())}
        by_stream = runtime.hub.subscriptions_by_stream()
        return {
            "instance": {
                "pid": os.getpid(),
                "uptime_s": round(time.time() - self._started, 1),
                "ready": reason is None,
                "not_ready_reason": reason,
                "draining": app.draining,
                "store": type(innermost(runtime.adapter)).__name__,
            },
            "connections": {
                "open": len(connections),
                "opened_total": STATS.connections_opened,
                "closed_by_code": closed,
                "most_subscriptions": [
                    {
                        "id": conn.id,
                        "subscriptions": len(conn.session.subscriptions),
                        "queued_frames": len(conn.outbox),
                        "authenticated": conn.auth_context is not None,
                    }
                    for conn in busiest[:TOP]
                ],
            },
            "subscriptions": {
                "total": sum(by_stream.values()),
                "by_stream": dict(sorted(by_stream.items())),
            },
            "top_groups": [
                {"stream": stream, "group": group, "subscriptions": count}
                for stream, group, count in runtime.hub.top_groups(TOP)
            ],
            "queues": await self._queues(),
        }

    async def _queues(self) -> list[dict[str, Any]]:
        background = self.app.background
        out: list[dict[str, Any]] = []
        for step in self.app.runtime.registry.events:
            name = step.config.name
            try:
                async with asyncio.timeout(_QUEUE_TIMEOUT_S):
                    stats = await background.queue.stats(name)
            except Exception as exc:  # the view answers even when a queue cannot
                out.append({"step": name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            out.append(
                {
                    "step": name,
                    "ready": stats.ready,
                    "delayed": stats.delayed,
                    "in_flight": stats.in_flight,
                    "dead": stats.dead,
                }
            )
        return out


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p class=none>none</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(data: dict[str, Any]) -> str:
    """The overview as a self-refreshing HTML page (every value escaped, no script)."""
    inst, conns, subs = data["instance"], data["connections"], data["subscriptions"]
    status = "ready" if inst["ready"] else f"NOT READY: {inst['not_ready_reason']}"
    sections = [
        ("Instance", _table(
            ["pid", "uptime (s)", "status", "store"],
            [[inst["pid"], inst["uptime_s"], status, inst["store"]]],
        )),
        ("Connections", _table(
            ["open", "opened", "closed by code"],
            [[conns["open"], conns["opened_total"],
              ", ".join(f"{k}: {v}" for k, v in conns["closed_by_code"].items()) or "-"]],
        )),
        ("Connections with the most subscriptions", _table(
            ["id", "subscriptions", "queued frames", "authenticated"],
            [[c["id"], c["subscriptions"], c["queued_frames"], c["authenticated"]]
             for c in conns["most_subscriptions"]],
        )),
        (f"Subscriptions per stream ({subs['total']})", _table(
            ["stream", "subscriptions"], [[k, v] for k, v in subs["by_stream"].items()]
        )),
        ("Top groups by subscribers", _table(
            ["stream", "group", "subscriptions"],
            [[g["stream"], g["group"], g["subscriptions"]] for g in data["top_groups"]],
        )),
        ("Event queues", _table(
            ["step", "ready", "delayed", "in flight", "dead letters"],
            [[q["step"], q.get("ready", "?"), q.get("delayed", "?"), q.get("in_flight", "?"),
              q.get("dead", q.get("error", "?"))] for q in data["queues"]],
        )),
    ]  # fmt: skip
    body = "".join(f"<h2>{html.escape(title)}</h2>{table}" for title, table in sections)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta http-equiv="refresh" content="5"><title>Surge admin</title><style>'
        "body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin-bottom:1em}"
        "th,td{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f4f4f4}"
        ".none{color:#888}</style></head><body><h1>Surge admin</h1>"
        f"<p>Read-only; refreshes every 5 s. JSON: <code>{ADMIN_PATH}api</code></p>"
        f"{body}</body></html>"
    )
