"""The ASGI application: one port for HTTP steps and stream WebSockets (any path).

Layers: ``SurgeApp`` routes by scope type; HTTP goes through CORS to ``serve_http``; WebSockets go
to ``serve_websocket``. The lifespan opens the storage adapter with the hub as its feed sink and
owns the long-lived tasks (the dev reloader), which log and keep going on error. It also runs
the app's ``Background`` (event and cron steps, ``surge.events``): opened after the storage, run
in the lifespan's TaskGroup, stopped gracefully (``EventSettings.shutdown_grace``) at shutdown.

Plugins (``surge.server.plugins``; the dev Workbench is one, installed by ``surge.create_app(...,
workbench=True)``) extend the app through ``runtime.extensions``: HTTP requests a plugin route
claims go to it, outside CORS; everything else is the core's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from starlette.types import Receive, Scope, Send

from surge.config import Config
from surge.errors import ConfigError
from surge.events.system import Background
from surge.project import CONFIG_FILE, default_adapter, default_background, load_config
from surge.server.asgi import route_path
from surge.server.cors import Cors
from surge.server.health import HEALTH_PATHS, serve_health
from surge.server.http import serve_http
from surge.server.logs import install_token_redaction
from surge.server.plugins import ServerPlugin
from surge.server.runtime import Runtime
from surge.server.static import with_static_files
from surge.server.websocket import serve_websocket
from surge.steps.config import (
    ApiRouteConfig,
    CronConfig,
    EventConfig,
    StreamConfig,
    normalize_api_config,
    normalize_cron_config,
    normalize_event_config,
    step_type,
)
from surge.steps.discovery import discover
from surge.steps.middleware import check_middleware
from surge.steps.registry import ApiRoute, CronStep, EventStep, Handler, Registry
from surge.streams.adapter import StreamAdapter
from surge.streams.stream import Streams

__all__ = ["SurgeApp", "create_app"]

logger = logging.getLogger(__name__)


class SurgeApp:
    """The ASGI callable; ``runtime`` exposes the hub, streams and adapter (e.g. to tests).

    ``plugins`` are installed once, before anything is served. ``workbench`` is set by the
    Workbench plugin (the dev Workbench with its per-process ``key``), None without it.
    """

    serves_detached_websockets = True
    """Under ``LeanWebSocketProtocol`` this app's call for a stream WebSocket returns once it is
    accepted and the connection goes on without it (``surge.server.websocket``)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        project_dir: Path | None = None,
        reload: bool = False,
        plugins: Sequence[ServerPlugin] = (),
        background: Background | None = None,
    ):
        self.runtime = runtime
        check_middleware(runtime.config.middleware, "Config.middleware")
        if background is None:
            queue, state, lock = default_background(None, runtime.config, runtime.adapter)
            background = Background(
                runtime, queue, state, settings=runtime.config.events, tick_lock=lock
            )
        self.background = background
        """Event and cron steps, ``emit`` and ``state`` (``surge.events``)."""
        self.project_dir = project_dir
        self.reload = reload
        # Set by `surge dev/start` (the process is ours): freeze startup objects out of the GC.
        self.tune_gc = False
        self.workbench: Any = None
        for plugin in plugins:
            plugin.install(self)
        extensions = runtime.extensions
        if plugins:
            runtime.swap_registry(runtime.registry)  # the plugins' filters and observers apply
        expose = ["x-trace-id", *extensions.expose_headers]
        self._http = Cors(
            with_static_files(self._serve_http, runtime, project_dir),
            origins=runtime.config.cors_origins,
            expose=expose,
        )
        self.started = asyncio.Event()
        self.draining = False
        # Loop time by which a drain must be over (``begin_drain``); bounds the background grace.
        self._drain_deadline: float | None = None

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_http(self.runtime, scope, receive, send, background=self.background)

    async def emit(
        self,
        event: dict[str, Any] | None = None,
        /,
        *,
        topic: str | None = None,
        data: Any = None,
        messageGroupId: str | None = None,
    ) -> list[str]:
        """Emit a message to the topic's subscribing steps (any topic); returns the message ids."""
        return await self.background.emit(
            event, topic=topic, data=data, messageGroupId=messageGroupId
        )

    async def wait_idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until no event message is queued or running (tests); TimeoutError otherwise."""
        await self.background.wait_idle(timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = route_path(scope)
            if path in HEALTH_PATHS and self.runtime.registry.match("GET", path) is None:
                await serve_health(path, self.readiness, scope, receive, send)
                return
            extensions = self.runtime.extensions
            plugin_app = extensions.route_for(scope) if extensions.routes else None
            if plugin_app is not None:
                await plugin_app(scope, receive, send)
            else:
                await self._http(scope, receive, send)
        elif kind == "websocket":
            await serve_websocket(self.runtime, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def readiness(self) -> str | None:
        """None when this instance should get traffic, else why not (``GET /readyz``)."""
        if self.draining:
            return "draining: shutting down"
        if not self.started.is_set():
            return "starting: storage and steps not ready yet"
        adapter = self.runtime.adapter
        if not getattr(adapter, "is_ready", True):
            reason = getattr(adapter, "not_ready_reason", None)
            return reason if isinstance(reason, str) else "storage not ready (reconnecting)"
        return None

    def begin_drain(self, deadline: float | None = None) -> None:
        """Stop getting traffic: ``/readyz`` answers 503 from now on.

        ``deadline`` (loop time) bounds the rest of the shutdown: running event handlers get
        ``EventSettings.shutdown_grace`` or what is left until then, whichever is shorter.
        """
        self.draining = True
        self._drain_deadline = deadline

    def close_websockets(self, code: int, reason: str) -> int:
        """Close every stream WebSocket not already closing with ``code``, each after what its
        outbox holds; return how many were told to close."""
        count = 0
        for conn in list(self.runtime.connections):
            if not conn.is_gone:
                conn.outbox.close(code, reason)
                count += 1
        return count

    @property
    def streams(self) -> Streams:
        """The project's streams, the same facade handlers get (``app.streams.todo.set(...)``)."""
        return self.runtime.streams

    def lifespan(self, host: Any = None) -> AbstractAsyncContextManager[None]:
        """Run the app (storage, background work, dev reloader) for the duration of the block.

        The ASGI lifespan uses it; a host app that mounts this one (Starlette and FastAPI do not
        run a mounted app's lifespan) passes it as its own, ``FastAPI(lifespan=rt.lifespan)``,
        or enters it inside its own lifespan: ``async with rt.lifespan(): yield``.

        Raises:
            Exception: the storage or the queue could not be opened (nothing is left open).
        """
        return self._running()

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        install_token_redaction()
        resources = contextlib.AsyncExitStack()
        try:
            await self.runtime.adapter.open(self.runtime.hub.dispatch)
            await self.background.open()
            hook = self.runtime.config.lifespan
            if hook is not None:
                self.background.resources = await resources.enter_async_context(hook())
        except Exception as exc:
            logger.error("startup failed: %s", exc)
            await resources.aclose()
            await self.background.close()
            await self.runtime.adapter.close()
            raise
        try:
            async with asyncio.TaskGroup() as tasks:
                background = [
                    tasks.create_task(supervise("re-sync", self.runtime.run_resyncs)),
                    tasks.create_task(supervise("presence", self.runtime.presence.run)),
                    tasks.create_task(supervise("access control", self.runtime.access.run)),
                ]
                for name, service in self.runtime.extensions.services:
                    background.append(tasks.create_task(supervise(name, service)))
                work = tasks.create_task(self.background.run())  # event and cron steps
                if self.reload and self.project_dir is not None:
                    root = self.project_dir
                    background.append(
                        tasks.create_task(supervise("step watcher", lambda: self._watch(root)))
                    )
                self.started.set()
                if self.tune_gc:
                    _tune_gc()
                try:
                    yield
                finally:
                    self.draining = True  # /readyz answers 503 from the first moment of a drain
                    # Graceful: running handlers get the grace, within the drain's bound.
                    await self.background.stop(self._background_grace())
                    await work
                    for task in background:
                        task.cancel()
        finally:
            self.started.clear()
            self.draining = False
            self._drain_deadline = None
            try:
                await resources.aclose()  # after the last handler finished
            finally:
                self.background.resources = None
                await self.background.close()
            try:
                await self.runtime.presence.close()  # announces this instance's leaves
                await self.runtime.adapter.close()
            finally:
                self.runtime.close()

    def _background_grace(self) -> float | None:
        deadline = self._drain_deadline
        if deadline is None:
            return None
        left = max(0.0, deadline - asyncio.get_running_loop().time())
        return min(self.runtime.config.events.shutdown_grace, left)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        running = self._running()
        try:
            await running.__aenter__()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await running.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})

    async def _watch(self, project_dir: Path) -> None:
        """Reload steps and surge.config.py on changes; a broken file keeps the previous version
        serving. Settings that cannot change in a running process (storage, queues, limits, CORS)
        are reported as needing a restart."""
        from watchfiles import awatch

        steps_dir = project_dir / "steps"
        config_file = project_dir / CONFIG_FILE
        if not steps_dir.is_dir():
            logger.warning("no %s directory: hot reload is off", steps_dir)
            return
        watched = [steps_dir, *([config_file] if config_file.is_file() else [])]
        async for changes in awatch(*watched, step=100):
            paths = {Path(path) for _, path in changes}
            if config_file in paths:
                self._reload_config(project_dir)
            if not any(path.suffix == ".py" and path != config_file for path in paths):
                continue
            try:
                registry = discover(project_dir)
            except ConfigError as exc:
                logger.error("reload failed, still serving the previous steps: %s", exc)
                continue
            self.runtime.swap_registry(registry)
            self.background.reload(registry)
            logger.info("reloaded steps after a change in %s", steps_dir)

    def _reload_config(self, project_dir: Path) -> None:
        try:
            config = load_config(project_dir)
        except ConfigError as exc:
            logger.error("reload of %s failed, keeping the previous one: %s", CONFIG_FILE, exc)
            return
        fixed = [
            name
            for name in _RESTART_SETTINGS
            if _fingerprint(getattr(config, name))
            != _fingerprint(getattr(self.runtime.config, name))
        ]
        if fixed:
            logger.warning(
                "%s changed %s: restart surge dev to apply (the rest is reloaded)",
                CONFIG_FILE,
                ", ".join(fixed),
            )
            # Keep what cannot change live; take everything else from the new file.
            config = dataclasses.replace(
                config, **{name: getattr(self.runtime.config, name) for name in fixed}
            )
        self.runtime.swap_config(config)
        logger.info("reloaded %s (stream auth, origins)", CONFIG_FILE)


# Config fields a running process cannot swap: storage and queues are open, limits are in the
# uvicorn protocols, CORS is built into the middleware, the event settings into the runner,
# the presence timeout into its backend's heartbeats.
_RESTART_SETTINGS = (
    "adapters",
    "limits",
    "cors_origins",
    "events",
    "openapi",
    "lifespan",
    "presence",
)


def _fingerprint(value: Any) -> Any:
    """What to compare of a setting across reloads of surge.config.py: values as they are,
    functions by name and code, adapter objects by their type (a reload makes new objects)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(_fingerprint(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_fingerprint(v) for v in value)
    code = getattr(value, "__code__", None)
    if code is not None:
        return (getattr(value, "__qualname__", ""), code.co_code, code.co_consts)
    return type(value).__qualname__


def _tune_gc() -> None:
    """Keep full collections short: the tens of thousands of objects alive after startup
    (modules, the app, uvicorn) move to the permanent generation, and young collections run less
    often. Full collections over them were the latency tail's cause (bench/README.md)."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 10_000), gen1, gen2)


async def supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a long-lived task for the app lifetime; log errors and restart it with backoff."""
    delay = 0.5
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s failed; restarting in %.1f s", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


InlineStep = tuple[ApiRouteConfig | EventConfig | CronConfig | dict[str, Any], Handler]


def _inline_registry(streams: Iterable[StreamConfig], steps: Iterable[InlineStep]) -> Registry:
    routes: list[ApiRoute] = []
    events: list[EventStep] = []
    crons: list[CronStep] = []
    for cfg, handler in steps:
        kind = step_type(cfg)
        if kind == "event":
            events.append(EventStep(normalize_event_config(cfg), handler))
        elif kind == "cron":
            crons.append(CronStep(normalize_cron_config(cfg), handler))
        else:
            routes.append(ApiRoute(normalize_api_config(cfg), handler))
    return Registry.build([(s, None) for s in streams], routes, events=events, crons=crons)


def create_app(
    project_dir: Path | str | None = None,
    *,
    config: Config | None = None,
    streams: Iterable[StreamConfig] = (),
    steps: Iterable[InlineStep] = (),
    adapter: StreamAdapter | None = None,
    reload: bool = False,
    plugins: Sequence[ServerPlugin] = (),
) -> SurgeApp:
    """Build the app for a project directory, or inline from streams and (config, handler) steps.

    ``plugins`` extend it (``surge.create_app(..., workbench=True)`` adds the dev Workbench).

    Raises:
        ConfigError: a step file, surge.config.py or a setting is wrong (names the file).
    """
    if project_dir is not None:
        root = Path(project_dir).resolve()
        config = config or load_config(root)
        registry = discover(root)
        adapter = adapter or default_adapter(root, config)
        runtime = Runtime(config, registry, adapter)
        queue, state, lock = default_background(root, config, adapter)
        return SurgeApp(
            runtime,
            project_dir=root,
            reload=reload,
            plugins=plugins,
            background=Background(runtime, queue, state, settings=config.events, tick_lock=lock),
        )
    config = config or Config()
    if adapter is None:
        from surge.streams.stores.memory import MemoryStreamAdapter

        adapter = config.adapters.streams or MemoryStreamAdapter()
    return SurgeApp(Runtime(config, _inline_registry(streams, steps), adapter), plugins=plugins)
