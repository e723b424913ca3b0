"""What a handler gets: the request, the response it returns, and ``ctx``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from surge.streams.stream import Streams

__all__ = ["ApiRequest", "ApiResponse", "FlowContext", "StepLogger"]


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


@dataclass(slots=True)
class ApiResponse:
    """What a handler returns: status, JSON-able body (models welcome) and extra headers."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


class StepLogger:
    """``ctx.logger``: ``info("msg", {"k": v})``, with the step name and trace id attached."""

    __slots__ = ("_logger", "step", "trace_id")

    def __init__(self, step: str, trace_id: str) -> None:
        self._logger = logging.getLogger(f"surge.step.{step}")
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


@dataclass(frozen=True, slots=True)
class FlowContext:
    """``ctx``: the logger, the project's streams and this request's trace id."""

    logger: StepLogger
    streams: Streams
    trace_id: str
