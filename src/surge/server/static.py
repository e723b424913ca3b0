"""A project's front end on the same port as its API and streams: static files as a fallback.

A project that has a built web app (``web/dist/index.html``, as examples/todo does after
``npm run build``) or a ``public/`` directory gets those files served at ``/``. API steps win:
a file is looked up only for a GET or HEAD that no step route claims (not even under another
method), and a file that does not exist falls through to the API's own JSON 404. The front end
can then open its stream at ``ws://<same host>/`` and call the API on its own origin, with no
CORS and no second server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from surge.server.asgi import route_path

if TYPE_CHECKING:
    from surge.server.runtime import Runtime

__all__ = ["BUILT_WEB_APP", "PUBLIC_DIR", "StaticFallback", "static_dir_for", "with_static_files"]

logger = logging.getLogger(__name__)

BUILT_WEB_APP = Path("web") / "dist"
PUBLIC_DIR = Path("public")


def static_dir_for(project_dir: Path | None) -> Path | None:
    """The directory of files to serve for ``project_dir``, or None.

    ``<project>/web/dist`` when it holds an ``index.html`` (a built web app), else
    ``<project>/public`` when it is a directory, else None.
    """
    if project_dir is None:
        return None
    built = project_dir / BUILT_WEB_APP
    if (built / "index.html").is_file():
        return built
    public = project_dir / PUBLIC_DIR
    if public.is_dir():
        return public
    return None


class StaticFallback:
    """ASGI: GET/HEAD requests that no API route claims are served from ``directory``.

    Everything else (other methods, routed paths, files that do not exist) goes to ``app``.
    ``has_route(method, path)`` is asked on every request, so hot-reloaded routes are seen.
    Directory URLs serve their ``index.html``; paths cannot escape ``directory``.
    """

    def __init__(
        self, app: ASGIApp, directory: Path, has_route: Callable[[str, str], bool]
    ) -> None:
        self.app = app
        self.directory = directory
        self.has_route = has_route
        self._files = StaticFiles(directory=directory, html=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if (
            scope["type"] != "http"
            or method not in ("GET", "HEAD")
            or self.has_route(method, route_path(scope))
        ):
            await self.app(scope, receive, send)
            return
        try:
            response = await self._files.get_response(self._files.get_path(scope), scope)
        except HTTPException:
            # No such file: the API answers (its 404 names the method and path).
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def with_static_files(app: ASGIApp, runtime: Runtime, project_dir: Path | None) -> ASGIApp:
    """``app`` with the project's static files as a fallback; ``app`` itself when there are none."""
    directory = static_dir_for(project_dir)
    if directory is None:
        return app
    logger.info("serving the files of %s at /", directory)
    return StaticFallback(
        app, directory, lambda method, path: runtime.registry.match(method, path) is not None
    )
