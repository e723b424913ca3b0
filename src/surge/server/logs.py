"""Logging hygiene: secrets never reach the logs, and clients cannot flood them.

**Redaction by meaning.** Stream tokens travel in the upgrade's URL (``?authToken=``) and in
``Sec-WebSocket-Protocol: Authorization,<token>``; uvicorn logs the URL of every upgrade (INFO)
and, at DEBUG, the request line and headers. A client may spell the parameter name any way the
server decodes to the same name (``auth%54oken``), so the filter parses every query parameter in
a log line, decodes its name as ``parse_qs`` does, and redacts the value of every parameter whose
decoded name is sensitive (``authToken``, and what ``register_sensitive_param`` adds: the
Workbench registers its key's parameter). The subprotocol form is redacted wherever it appears.
The filter sits on uvicorn's loggers and on every handler of the root logger, so records of any
logger that reach a handler are clean.

**JSON lines.** ``JsonFormatter`` (``--log-format json``) writes one JSON object per record:
``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and, where the record was logged
inside such work, ``trace_id``, ``step`` and ``connection_id`` (``surge.log_context``) and, with
tracing on, ``span_id`` (``surge.tracing``), plus
``exception`` with the traceback. The message and the traceback go through the same redaction,
so JSON lines are as clean as plain ones.

**Budgets.** ``LogBudget`` caps lines about client mistakes (bad frames, refused heads, dropped
peers) per minute; the lines past the budget are counted and reported with the next one allowed.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import unquote_plus

import orjson

import surge.tracing as tracing
from surge.log_context import CONNECTION_ID, STEP, TRACE_ID

__all__ = [
    "CLIENT_MISTAKES",
    "LOG_FORMATS",
    "LOG_FORMAT_ENV",
    "LOG_LEVEL_ENV",
    "JsonFormatter",
    "LogBudget",
    "configure_logging",
    "install_token_redaction",
    "redact_tokens",
    "register_sensitive_param",
]

_sensitive: set[str] = {"authToken"}
_QUERY_PARAM = re.compile(r"([?&])([^=&\s\"'#?]+)=([^&\s\"'#]*)")
_SUBPROTOCOL_TOKEN = re.compile(r"(Authorization,\s*)[^&\s,\"')\]]+", re.IGNORECASE)
_REDACTED = "[redacted]"
_LOGGERS = ("uvicorn.error", "uvicorn.access", "uvicorn")


def register_sensitive_param(name: str) -> None:
    """Redact the value of the query parameter ``name`` (as decoded) from every log line."""
    _sensitive.add(name)


def _redact_param(match: re.Match[str]) -> str:
    name = match.group(2)
    if name in _sensitive or unquote_plus(name) in _sensitive:
        return f"{match.group(1)}{name}={_REDACTED}"
    return match.group(0)


def redact_tokens(value: Any) -> Any:
    """Return ``value`` with stream tokens replaced by ``[redacted]`` (non-strings unchanged)."""
    if not isinstance(value, str):
        return value
    if "=" in value:
        value = _QUERY_PARAM.sub(_redact_param, value)
    if "uthorization" in value or "UTHORIZATION" in value:
        value = _SUBPROTOCOL_TOKEN.sub(r"\1" + _REDACTED, value)
    return value


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, str):
        return redact_tokens(arg)
    if isinstance(arg, bytes):
        return redact_tokens(arg.decode("latin-1"))
    if isinstance(arg, (list, tuple)):
        return type(arg)(_redact_arg(a) for a in arg)
    return arg


class _RedactSecrets(logging.Filter):
    """Replace secrets in a record's message and arguments with ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


_FILTER = _RedactSecrets()


def install_token_redaction() -> None:
    """Put the redacting filter on uvicorn's loggers and on the root logger's handlers, once."""
    for name in _LOGGERS:
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
        for handler in target.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


LOG_FORMAT_ENV = "SURGE_LOG_FORMAT"
"""``plain`` or ``json`` (``--log-format``; also how ``--workers``' processes learn it)."""
LOG_LEVEL_ENV = "SURGE_LOG_LEVEL"
LOG_FORMATS = ("plain", "json")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_tokens(record.getMessage()),
        }
        trace_id = getattr(record, "trace_id", None) or TRACE_ID.get()
        if trace_id:
            entry["trace_id"] = trace_id
        step = getattr(record, "step", None) or STEP.get()
        if step:
            entry["step"] = step
        tracer = tracing.TRACER
        if tracer is not None:  # tracing on: the span this line was written in
            span_id = tracer.current_span_id()
            if span_id is not None:
                entry["span_id"] = span_id
        connection_id = CONNECTION_ID.get()
        if connection_id is not None:
            entry["connection_id"] = connection_id
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = redact_tokens(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact_tokens(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact_tokens(self.formatStack(record.stack_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, log_format: str, stream: IO[str] | None = None) -> None:
    """Send every logger's records to ``stream`` (stderr) as plain or JSON lines, redacted.

    Raises:
        ValueError: ``log_format`` is not one of ``LOG_FORMATS``.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(PLAIN_FORMAT)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    install_token_redaction()


class LogBudget:
    """At most ``per_minute`` lines; ``allow()`` says whether this one may be written."""

    __slots__ = ("_count", "_lock", "_start", "_suppressed", "per_minute")

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._start = time.monotonic()
        self._count = 0
        self._suppressed = 0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """True while this minute's budget lasts (the first line after says how many were cut)."""
        with self._lock:
            now = time.monotonic()
            if now - self._start >= 60.0:
                suppressed = self._suppressed
                self._start, self._count, self._suppressed = now, 0, 0
                if suppressed:
                    logging.getLogger(__name__).info(
                        "%d more client-error lines were not logged in the last minute", suppressed
                    )
            if self._count < self.per_minute:
                self._count += 1
                return True
            self._suppressed += 1
            return False

    def reset(self) -> None:
        """Start a fresh minute (tests: each in-process test gets the whole budget)."""
        with self._lock:
            self._start, self._count, self._suppressed = time.monotonic(), 0, 0


CLIENT_MISTAKES = LogBudget(per_minute=60)
"""The budget shared by every line about a client's mistake (bad frames, heads, bodies, ids)."""
