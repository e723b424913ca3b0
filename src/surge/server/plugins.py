"""Extension points of the server, so that tools like the Workbench live outside the core.

A plugin is an object with ``install(app)``; it registers what it needs on ``app.extensions``
before the app serves anything:

- ``routes``: ASGI apps that claim HTTP requests (``claims(scope)``) before CORS and the API steps
  (the Workbench's ``/__surge/`` pages).
- ``upgrade_gates``: async callables that may decide a WebSocket upgrade before the origin check
  and ``authenticate`` (the Workbench's key); None lets the next gate or the normal path decide.
- ``reserved_contexts``: auth contexts only a gate may hand out; ``authenticate`` returning one
  is refused.
- ``registry_filters``: functions applied to every registry the app serves, at startup and on
  each hot reload (the Workbench wraps ``can_access``).
- ``response_hooks``: context managers entered around each API handler call; what they yield
  maps the response body to extra response headers (the Workbench marks stream items).
- ``value_observers``: called with (stream, group, id, value) for every value ``set`` or ``get``
  returns (the Workbench notes which value came from which item).
- ``expose_headers``: response headers CORS lets pages read.
- ``request_observers``: told (step name, status, seconds) after each API request (metrics).
- ``services``: named long-lived coroutines run for the app's lifetime (started once the storage
  is open, cancelled at shutdown; an error is logged and the service restarted with backoff):
  the metrics port's listener.

Nothing here runs unless a plugin registered it: ``surge start`` installs no plugin, so production
carries none of the Workbench's branches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.types import ASGIApp, Scope

from surge.server.decisions import UpgradeDecision
from surge.steps.registry import Registry

__all__ = [
    "HttpRoute",
    "RequestObserver",
    "ResponseHook",
    "ServerExtensions",
    "ServerPlugin",
    "UpgradeGate",
    "ValueObserver",
]

HeadersFor = Callable[[Any], Mapping[str, str]]
"""Maps a handler's response body to extra response headers."""
ResponseHook = Callable[[], AbstractContextManager[HeadersFor]]
ValueObserver = Callable[[str, str, str, Any], None]
RequestObserver = Callable[[str, int, float], None]
UpgradeGate = Callable[[Scope, Mapping[str, str]], Awaitable[UpgradeDecision | None]]


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """An ASGI app serving the HTTP requests ``claims`` accepts."""

    claims: Callable[[Scope], bool]
    app: ASGIApp


@dataclass
class ServerExtensions:
    """What plugins registered; read by the app, the HTTP adapter and the upgrade check."""

    routes: list[HttpRoute] = field(default_factory=list)
    upgrade_gates: list[UpgradeGate] = field(default_factory=list)
    reserved_contexts: list[object] = field(default_factory=list)
    registry_filters: list[Callable[[Registry], Registry]] = field(default_factory=list)
    response_hooks: list[ResponseHook] = field(default_factory=list)
    value_observers: list[ValueObserver] = field(default_factory=list)
    expose_headers: list[str] = field(default_factory=list)
    request_observers: list[RequestObserver] = field(default_factory=list)
    services: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)

    def route_for(self, scope: Scope) -> ASGIApp | None:
        """The plugin app that claims this HTTP request, if any."""
        for route in self.routes:
            if route.claims(scope):
                return route.app
        return None

    def filter_registry(self, registry: Registry) -> Registry:
        """``registry`` through every registered filter."""
        for apply in self.registry_filters:
            registry = apply(registry)
        return registry

    def observe(self, stream: str, group: str, id: str, value: Any) -> None:
        """Tell every value observer (only called when there is at least one)."""
        for observer in self.value_observers:
            observer(stream, group, id, value)

    @contextlib.contextmanager
    def around_response(self) -> Iterator[HeadersFor]:
        """Enter every response hook; yields the combined body -> extra headers function."""
        with contextlib.ExitStack() as stack:
            parts = [stack.enter_context(hook()) for hook in self.response_hooks]

            def headers_for(body: Any) -> Mapping[str, str]:
                extra: dict[str, str] = {}
                for part in parts:
                    extra.update(part(body))
                return extra

            yield headers_for


class ServerPlugin(Protocol):
    """Something that extends a ``SurgeApp`` (see the module docstring)."""

    def install(self, app: Any) -> None:
        """Register routes, gates, filters and hooks on ``app.extensions``."""
        ...
