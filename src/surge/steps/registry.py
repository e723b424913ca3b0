"""The immutable registry of a project's streams and steps (hot reload swaps it whole)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surge.errors import ConfigError
from surge.steps.config import ApiRouteConfig, CronConfig, EventConfig, StreamConfig
from surge.streams.schema import Schema, schema_from

__all__ = [
    "ApiRoute",
    "CronStep",
    "EventStep",
    "MethodNotAllowed",
    "Registry",
    "RouteMatch",
    "compile_path",
]

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]
_PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def compile_path(path: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """Compile ``/todo/:id`` (or ``/todo/{id}``) to a regex matching one segment per param."""
    names: list[str] = []
    pattern = ""
    pos = 0
    for match in _PARAM.finditer(path):
        pattern += re.escape(path[pos : match.start()])
        names.append(match.group(1) or match.group(2))
        pattern += "([^/]+)"
        pos = match.end()
    pattern += re.escape(path[pos:])
    if len(set(names)) != len(names):
        raise ConfigError(f"path {path!r} repeats a parameter name")
    return re.compile(f"^{pattern}/?$" if path != "/" else "^/$"), tuple(names)


@dataclass(frozen=True)
class ApiRoute:
    """A discovered API step: its config, handler and where it came from."""

    config: ApiRouteConfig
    handler: Handler
    source: Path | None = None
    pattern: re.Pattern[str] = field(init=False)
    param_names: tuple[str, ...] = field(init=False)
    body_schema: Schema | None = field(init=False)

    def __post_init__(self) -> None:
        pattern, names = compile_path(self.config.path)
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "param_names", names)
        object.__setattr__(
            self,
            "body_schema",
            schema_from(self.config.body_schema, what=f"step {self.config.name!r} body_schema"),
        )

    @property
    def signature(self) -> str:
        """``METHOD /path`` with params normalised, to find duplicate routes."""
        return f"{self.config.method} {_PARAM.sub(':_', self.config.path)}"


@dataclass(frozen=True)
class EventStep:
    """A discovered event step: ``handler(input, ctx)`` for each message of its topics."""

    config: EventConfig
    handler: Handler
    source: Path | None = None

    @property
    def name(self) -> str:
        """The step name (also the name of its queue)."""
        return self.config.name


@dataclass(frozen=True)
class CronStep:
    """A discovered cron step: ``handler(ctx)`` on every tick of ``config.cron``."""

    config: CronConfig
    handler: Handler
    source: Path | None = None

    @property
    def name(self) -> str:
        """The step name."""
        return self.config.name


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route that serves a request, with the values of its path parameters."""

    route: ApiRoute
    path_params: dict[str, str]


@dataclass(frozen=True, slots=True)
class MethodNotAllowed:
    """The path exists, under these other methods only."""

    allowed: tuple[str, ...]


@dataclass(frozen=True)
class Registry:
    """Streams by name, API routes, event and cron steps; built by discovery or inline."""

    streams: Mapping[str, StreamConfig] = field(default_factory=dict)
    routes: tuple[ApiRoute, ...] = ()
    sources: Mapping[str, Path] = field(default_factory=dict)
    events: tuple[EventStep, ...] = ()
    crons: tuple[CronStep, ...] = ()
    subscribers: Mapping[str, tuple[EventStep, ...]] = field(init=False, compare=False)
    """topic -> the event steps subscribed to it, in registry order."""

    def __post_init__(self) -> None:
        by_topic: dict[str, list[EventStep]] = {}
        for step in self.events:
            for topic in step.config.subscribes:
                by_topic.setdefault(topic, []).append(step)
        object.__setattr__(self, "subscribers", {t: tuple(s) for t, s in by_topic.items()})

    def event_step(self, name: str) -> EventStep | None:
        """The event step named ``name`` (its queue's consumer), or None."""
        for step in self.events:
            if step.name == name:
                return step
        return None

    def match(self, method: str, path: str) -> RouteMatch | MethodNotAllowed | None:
        """Find the route for ``method path``.

        Returns:
            a ``RouteMatch``; ``MethodNotAllowed`` when the path exists only under other methods
            (405); None when nothing matches (404).
        """
        allowed: list[str] = []
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.config.method == method or (method == "HEAD" and route.config.method == "GET"):
                return RouteMatch(route, dict(zip(route.param_names, found.groups(), strict=True)))
            allowed.append(route.config.method)
        return MethodNotAllowed(tuple(allowed)) if allowed else None

    @classmethod
    def build(
        cls,
        streams: list[tuple[StreamConfig, Path | None]],
        routes: list[ApiRoute],
        *,
        events: list[EventStep] | tuple[EventStep, ...] = (),
        crons: list[CronStep] | tuple[CronStep, ...] = (),
    ) -> Registry:
        """Assemble a registry, refusing duplicate stream names, step names and routes.

        A topic that some event step subscribes to but no step emits is logged as a warning
        (it may still come from ``surge emit`` or the Workbench).
        """
        by_name: dict[str, StreamConfig] = {}
        sources: dict[str, Path] = {}
        for config, source in streams:
            if config.name in by_name:
                raise ConfigError(
                    f"stream {config.name!r} is defined twice: in {sources.get(config.name)} "
                    f"and in {source}",
                    path=source,
                )
            by_name[config.name] = config
            if source is not None:
                sources[config.name] = source
        names: dict[str, ApiRoute | EventStep | CronStep] = {}
        for step in [*routes, *events, *crons]:
            first = names.get(step.config.name)
            if first is not None:
                raise ConfigError(
                    f"step name {step.config.name!r} is used twice: in {first.source} "
                    f"and in {step.source}",
                    path=step.source,
                )
            names[step.config.name] = step
        emitted = {topic for step in names.values() for topic in step.config.emits}
        for event in events:
            for topic in event.config.subscribes:
                if topic not in emitted:
                    logger.warning(
                        "%s: step %r subscribes to topic %r, which no step emits",
                        event.source or "(inline)",
                        event.config.name,
                        topic,
                    )
        signatures: dict[str, ApiRoute] = {}
        for route in routes:
            first = signatures.get(route.signature)
            if first is not None:
                raise ConfigError(
                    f"route {route.config.method} {route.config.path} is defined twice: "
                    f"in {first.source} ({first.config.name}) and in {route.source} "
                    f"({route.config.name})",
                    path=route.source,
                )
            signatures[route.signature] = route
        # Static segments win over parameters: /todo/typing before /todo/:id.
        ordered = sorted(
            routes, key=lambda r: [bool(_PARAM.match(seg)) for seg in r.config.path.split("/")]
        )
        return cls(
            streams=by_name,
            routes=tuple(ordered),
            sources=sources,
            events=tuple(events),
            crons=tuple(crons),
        )
