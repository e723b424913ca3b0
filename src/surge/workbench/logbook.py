"""The Workbench's log view: the last ``ctx.logger`` lines, in memory, secrets redacted.

``LogBook`` is a ``logging.Handler`` with a bounded deque. ``attach`` puts it on the
``surge.step`` logger (every ``ctx.logger`` is ``surge.step.<step name>``, see
``surge.steps.context.StepLogger``) for as long as the Workbench that owns it lives. Each record
becomes ``{seq, at, level, step, traceId, message, data}``: the step from the logger's name, the
trace id from StepLogger's ``[trace %s]`` suffix.

Redaction: the server's filter (``surge.server.logs``) sits on uvicorn's and the root logger's
handlers, which a record reaches only after this one; so this handler runs the same
``redact_tokens`` over every text it keeps (stream tokens, the Workbench key, every parameter
``register_sensitive_param`` named).

The handler adds nothing to the logger's level: lines below the level the app logs at (``surge
dev --log-level``) never reach it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections import deque
from typing import Any, Final

from surge.server.logs import redact_tokens

__all__ = ["DEFAULT_CAPACITY", "STEP_LOGGER", "LogBook"]

DEFAULT_CAPACITY: Final = 500
STEP_LOGGER: Final = "surge.step"
_PREFIX: Final = STEP_LOGGER + "."
_TRACE_SUFFIX: Final = " [trace %s]"


class LogBook(logging.Handler):
    """The last ``capacity`` step log lines; ``lines()`` filters them by trace id and step."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__(logging.NOTSET)
        self.capacity = capacity
        self._lines: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._seq = itertools.count(1)
        self._lines_lock = threading.Lock()  # readers are not inside Handler.handle

    def attach(self, owner: object) -> None:
        """Listen on ``surge.step`` until ``owner`` is garbage-collected (or ``detach``)."""
        target = logging.getLogger(STEP_LOGGER)
        if self not in target.handlers:
            target.addHandler(self)
        weakref.finalize(owner, target.removeHandler, self)

    def detach(self) -> None:
        """Stop listening."""
        logging.getLogger(STEP_LOGGER).removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record`` as a redacted line."""
        try:
            line = _line(record)
        except Exception:
            self.handleError(record)
            return
        with self._lines_lock:
            line["seq"] = next(self._seq)
            self._lines.append(line)

    def lines(
        self, *, trace_id: str | None = None, step: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The newest lines matching both filters (None: any), oldest first."""
        with self._lines_lock:
            lines = list(self._lines)
        picked = [
            line
            for line in lines
            if (trace_id is None or line["traceId"] == trace_id)
            and (step is None or line["step"] == step)
        ]
        return picked[-limit:] if limit > 0 else []


def _line(record: logging.LogRecord) -> dict[str, Any]:
    name = record.name
    step = name[len(_PREFIX) :] if name.startswith(_PREFIX) else None
    trace_id: str | None = None
    data: str | None = None
    msg, args = record.msg, record.args
    if isinstance(msg, str) and msg.endswith(_TRACE_SUFFIX) and isinstance(args, tuple) and args:
        # StepLogger: "%s [trace %s]" or "%s %s [trace %s]" (message, JSON data, trace id).
        trace_id = str(args[-1])
        head = msg[: -len(_TRACE_SUFFIX)]
        if head == "%s %s" and len(args) == 3:
            message, data = str(args[0]), str(args[1])
        else:
            message = head % args[:-1]
    else:
        message = record.getMessage()
    return {
        "at": record.created,
        "level": record.levelname,
        "logger": name,
        "step": step,
        "traceId": trace_id,
        "message": redact_tokens(message),
        "data": None if data is None else redact_tokens(data),
    }
