"""What a handler gets: the request, the response it returns, and ``ctx``."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from surge.errors import ConfigError
from surge.state.base import State
from surge.state.memory import MemoryStateStore
from surge.streams.stream import Streams

__all__ = ["ApiRequest", "ApiResponse", "Emit", "FlowContext", "StepLogger"]

# Motia's Python ``req`` is a dict: these keys (and the snake_case ones) read the attributes.
_REQUEST_KEYS = {
    "body": "body",
    "pathParams": "path_params",
    "path_params": "path_params",
    "queryParams": "query_params",
    "query_params": "query_params",
    "headers": "headers",
    "rawBody": "raw_body",
    "raw_body": "raw_body",
    "method": "method",
    "path": "path",
}


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """An HTTP request as a step handler sees it."""

    body: Any
    path_params: Mapping[str, str] = field(default_factory=dict)
    query_params: Mapping[str, str | list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    raw_body: bytes = b""
    method: str = "GET"
    path: str = "/"

    # Motia's Python steps spell these in camelCase.
    @property
    def pathParams(self) -> Mapping[str, str]:
        """Alias of ``path_params``."""
        return self.path_params

    @property
    def queryParams(self) -> Mapping[str, str | list[str]]:
        """Alias of ``query_params``."""
        return self.query_params

    # ``req["body"]``, ``req.get("pathParams")``: the dict Motia's Python handlers get.
    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, _REQUEST_KEYS[key])
        except KeyError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        """``req.get("body")``, as on Motia's dict request."""
        name = _REQUEST_KEYS.get(key)
        return default if name is None else getattr(self, name)

    def __contains__(self, key: object) -> bool:
        return key in _REQUEST_KEYS

    def keys(self) -> Iterator[str]:
        """The dict keys Motia's request has (camelCase)."""
        return iter(("body", "pathParams", "queryParams", "headers", "rawBody", "method", "path"))


@dataclass(slots=True)
class ApiResponse:
    """What a handler returns: status, JSON-able body (models welcome) and extra headers."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


_STEP_LOGGERS: dict[str, logging.Logger] = {}


class StepLogger:
    """``ctx.logger``: ``info("msg", {"k": v})``, with the step name and trace id attached."""

    __slots__ = ("_logger", "step", "trace_id")

    def __init__(self, step: str, trace_id: str) -> None:
        logger = _STEP_LOGGERS.get(step)
        if logger is None:  # logging.getLogger takes the logging lock: once per step name
            logger = _STEP_LOGGERS[step] = logging.getLogger(f"surge.step.{step}")
        self._logger = logger
        self.step = step
        self.trace_id = trace_id

    def _log(self, level: int, message: str, data: Mapping[str, Any] | None) -> None:
        if not self._logger.isEnabledFor(level):
            return
        if data:
            try:
                extra = orjson.dumps(data, default=str).decode()
            except TypeError:
                extra = repr(data)
            self._logger.log(level, "%s %s [trace %s]", message, extra, self.trace_id)
        else:
            self._logger.log(level, "%s [trace %s]", message, self.trace_id)

    def debug(self, message: str, data: Mapping[str, Any] | None = None) -> None:
        """Log at DEBUG."""
        self._log(logging.DEBUG, message, data)

    def info(self, message: str, data: Mapping[str, Any] | None = None) -> None:
        """Log at INFO."""
        self._log(logging.INFO, message, data)

    def warning(self, message: str, data: Mapping[str, Any] | None = None) -> None:
        """Log at WARNING."""
        self._log(logging.WARNING, message, data)

    warn = warning

    def error(self, message: str, data: Mapping[str, Any] | None = None) -> None:
        """Log at ERROR."""
        self._log(logging.ERROR, message, data)


class Emit(Protocol):
    """``ctx.emit``: ``await ctx.emit({"topic": t, "data": d})`` or ``ctx.emit(topic=t, data=d)``.

    Returns the ids of the enqueued messages (one per subscribing step), once they are durable.
    """

    async def __call__(
        self,
        event: Mapping[str, Any] | None = None,
        /,
        *,
        topic: str | None = None,
        data: Any = None,
        messageGroupId: str | None = None,
    ) -> list[str]: ...


async def _no_emit(
    event: Mapping[str, Any] | None = None,
    /,
    *,
    topic: str | None = None,
    data: Any = None,
    messageGroupId: str | None = None,
) -> list[str]:
    raise ConfigError("emit is not available in this context (no queue is attached)")


def _scratch_state() -> State:
    return State(MemoryStateStore())


@dataclass(frozen=True, slots=True)
class FlowContext:
    """``ctx``: the logger, the project's streams, this flow's trace id, ``emit`` and ``state``.

    The trace id is the same for a whole chain (API -> event -> event): it travels with every
    message ``emit`` enqueues.
    """

    logger: StepLogger
    streams: Streams
    trace_id: str
    emit: Emit = _no_emit
    state: State = field(default_factory=_scratch_state)
    resources: Any = None
    """What ``Config.lifespan`` yielded at startup (pools, clients), or None."""
