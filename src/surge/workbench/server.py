"""The Workbench's HTTP side: its page, its JSON endpoints and the ``/endpoints`` shortcut.

Everything lives under ``/__surge/`` (a prefix no user route should use): the page at
``/__surge/workbench/`` and JSON at ``/__surge/api/{session,endpoints,streams}``. ``GET
/endpoints`` (the guide's URL) redirects to the page only while the project has no route there.
These responses bypass the project's CORS: other sites cannot read them.

Under a mount (``api.mount("/rt", app)``) every path is matched below the mount point
(``route_path``: Starlette's full ``path`` with ``root_path`` set, or a path the host already
stripped), and the redirects point below it too (``/rt/__surge/workbench/``). The page finds
its JSON, the API steps and the stream WebSocket from its own URL (``static/urls.js``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import orjson
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from surge.errors import StoreError
from surge.server.asgi import request_headers, route_path
from surge.workbench.access import is_local_host, is_same_origin, new_key
from surge.workbench.describe import describe_endpoints, describe_streams

if TYPE_CHECKING:
    from surge.events.system import Background
    from surge.server.runtime import Runtime

__all__ = ["PAGE_PATH", "PREFIX", "STATIC_DIR", "Workbench"]

logger = logging.getLogger(__name__)

PREFIX: Final = "/__surge/"
PAGE_PATH: Final = "/__surge/workbench/"
STATIC_DIR: Final = Path(__file__).parent / "static"
_GUIDE_PATHS = ("/endpoints", "/endpoints/")
_STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(html|js|css|svg)$")
_CONTENT_TYPES = {
    "html": b"text/html; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "svg": b"image/svg+xml",
}
_PAGE_HEADERS = [
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
Headers = list[tuple[bytes, bytes]]


class Workbench:
    """The dev-only Workbench of one app; ``key`` admits its WebSocket past stream auth."""

    def __init__(self, runtime: Runtime, project_dir: Path | None = None) -> None:
        self.runtime = runtime
        self.project_dir = project_dir
        self.key = new_key()
        self.background: Background | None = None
        """Set by the app: serves ``POST /__surge/api/emit`` (``surge emit``)."""

    def handles(self, scope: Scope) -> bool:
        """True for ``/__surge/...`` and for a ``GET /endpoints`` no user route claims."""
        path = route_path(scope)
        if path.startswith(PREFIX) or path == PREFIX[:-1]:
            return True
        return (
            path in _GUIDE_PATHS
            and scope["method"] in ("GET", "HEAD")
            and self.runtime.registry.match("GET", path) is None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI handler for the requests ``handles`` accepted."""
        path = route_path(scope)
        method: str = scope["method"]
        if path == "/__surge/api/emit" and method == "POST" and self.background is not None:
            await self._emit(scope, receive, send)  # surge emit (surge.events.dev)
        elif method not in ("GET", "HEAD"):
            await _send(send, method, *_json({"error": f"{method} not allowed on {path}"}, 405))
        elif path in _GUIDE_PATHS or path in (PREFIX[:-1], PREFIX, PAGE_PATH[:-1]):
            await _send(send, method, 307, b"", [(b"location", _page_location(scope))])
        elif path.startswith(PAGE_PATH):
            await _send(send, method, *_static(path.removeprefix(PAGE_PATH) or "index.html"))
        elif path == "/__surge/api/session":
            await _send(send, method, *self._session(scope))
        elif path == "/__surge/api/endpoints":
            root = self.project_dir
            endpoints = describe_endpoints(self.runtime.registry, root)
            await _send(send, method, *_json({"endpoints": endpoints}))
        elif path == "/__surge/api/streams":
            await _send(send, method, *await self._streams())
        else:
            await _send(send, method, *_json({"error": f"no workbench resource {path}"}, 404))

    async def _emit(self, scope: Scope, receive: Receive, send: Send) -> None:
        from surge.events.dev import serve_emit

        headers = request_headers(scope)
        if not is_local_host(headers, self.runtime.config.workbench_hosts) or not is_same_origin(
            headers
        ):
            logger.warning("workbench emit refused: not from this machine's own pages")
            await _send(send, "POST", *_json({"error": "emit is for this machine only"}, 403))
            return
        assert self.background is not None  # checked by the caller
        await serve_emit(self.background, scope, receive, send)

    def _session(self, scope: Scope) -> tuple[int, bytes, Headers]:
        headers = request_headers(scope)
        if not is_local_host(headers, self.runtime.config.workbench_hosts):
            host = headers.get("host")
            logger.warning("workbench session refused: Host %r is not this machine", host)
            message = "the workbench session is for this machine's host names only"
            return _json({"error": message}, 403)
        if not is_same_origin(headers):
            logger.warning("workbench session refused: cross-origin request")
            return _json({"error": "the workbench session is for same-origin pages only"}, 403)
        auth = self.runtime.config.stream_auth is not None
        return _json({"workbenchKey": self.key, "streamAuth": auth})

    async def _streams(self) -> tuple[int, bytes, Headers]:
        try:
            streams = await describe_streams(self.runtime)
        except StoreError as exc:
            logger.error("workbench: listing stream groups failed: %s", exc)
            return _json({"error": "storage unavailable, retry later"}, 503)
        return _json({"streams": streams})


def _page_location(scope: Scope) -> bytes:
    """The page's URL path as the browser sees it: below the mount point (``root_path``), so
    ``/__surge/workbench/`` on its own and ``/rt/__surge/workbench/`` under ``mount("/rt")``."""
    root = scope.get("root_path", "").strip("/")
    # One leading slash whatever root_path holds: "//host" would make the Location leave the site.
    return (quote("/" + root if root else "") + PAGE_PATH).encode("ascii")


def _json(body: Any, status: int = 200) -> tuple[int, bytes, Headers]:
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    return status, orjson.dumps(body), headers


def _static(name: str) -> tuple[int, bytes, Headers]:
    # A fixed directory and a strict name pattern: no path can leave STATIC_DIR.
    match = _STATIC_NAME.match(name)
    file = STATIC_DIR / name
    if match is None or not file.is_file():
        return _json({"error": f"no workbench file {name!r}"}, 404)
    headers = [(b"content-type", _CONTENT_TYPES[match.group(1)]), *_PAGE_HEADERS]
    return 200, file.read_bytes(), headers


async def _send(send: Send, method: str, status: int, body: bytes, headers: Headers) -> None:
    response = Response(body, status_code=status)
    response.raw_headers.extend(headers)
    if method == "HEAD":
        response.body = b""  # the content-length stays the one of the GET
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
