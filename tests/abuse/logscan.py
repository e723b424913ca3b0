"""The whole-suite token scan (issue 9 item 3): no test token reaches any server log line.

Two sources, both scanned for every known token, literally and percent-decoded:

* **In-process log records.** ``install()`` wraps ``logging.Logger.callHandlers``, the one call
  every emitted record passes after its logger's filters (where Surge redacts) and before any
  handler: pytest's, uvicorn's or a user's. Records of client-side libraries (the websockets
  client, httpx) are skipped: they log what the *test* sent, not what the server logged.
* **Server subprocess logs.** ``tests/e2e/surge_process.py`` registers each log file it writes;
  files are read after every test (the server is stopped by then) and once more at session end.

Tokens: those of examples/chat and of the suites (``KNOWN_TOKENS``) and any a test registers
(``register_token``, for instance the Workbench key it fetched). tests/conftest.py drives it:
``pytest_configure`` installs, ``pytest_runtest_teardown`` scans the files, ``pytest_sessionfinish``
fails the session on a leak; ``test_zz_log_scan.py`` (ordered last) asserts the scan was not
vacuous.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

__all__ = [
    "KNOWN_TOKENS",
    "PENDING_REDACTION_FIX",
    "SCAN",
    "LogScan",
    "install",
    "register_log_file",
    "register_token",
]

# While True, leaks of the tokens registered with ``pending=True`` are reported but do not fail
# the session (for landing a token test ahead of its fix). Redaction by meaning landed with
# issue 9 (ec2b338): every leak fails.
PENDING_REDACTION_FIX = False

# Every token the suites authenticate with (examples/chat, tests/compat, tests/integration).
KNOWN_TOKENS: tuple[str, ...] = (
    "alice-token",
    "bob-token",
    "secret-token",
    "s3cr3t-token-never-logged",
    "tok-ann",
    "tok-bob",
)

# Loggers of the test's own clients: they describe what the test sent, not what a server logged.
CLIENT_LOGGERS: tuple[str, ...] = ("websockets.client", "httpx", "httpcore", "hpack")


@dataclass
class Leak:
    """One log line that holds a token."""

    source: str
    token: str
    line: str
    pending: bool


@dataclass
class LogScan:
    """What was scanned, and every leak found."""

    tokens: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(KNOWN_TOKENS, False))
    records: int = 0
    files: dict[Path, int] = field(default_factory=dict)  # path -> bytes scanned so far
    file_lines: int = 0
    leaks: list[Leak] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def find(self, text: str) -> list[tuple[str, bool]]:
        """The (token, pending) pairs that ``text`` holds, literally or percent-decoded."""
        decoded = unquote(text) if "%" in text else text
        return [
            (token, pending)
            for token, pending in self.tokens.items()
            if token in text or token in decoded
        ]

    def _check(self, source: str, text: str) -> None:
        for token, pending in self.find(text):
            self.leaks.append(Leak(source, token, text[:500], pending))

    def scan_record(self, logger_name: str, record: logging.LogRecord) -> None:
        """Check one emitted record: its message, traceback and stack."""
        if logger_name.startswith(CLIENT_LOGGERS) or record.name.startswith(CLIENT_LOGGERS):
            return
        try:
            text = record.getMessage()
        except Exception:  # a broken record: scan its parts
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        elif record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        with self._lock:
            self.records += 1
            self._check(f"log record {record.name}:{record.levelname}", text)

    def register_file(self, path: Path) -> None:
        """A server log file to scan (from offset 0)."""
        with self._lock:
            self.files.setdefault(path, 0)

    def scan_files(self, *, final: bool = False) -> None:
        """Read what was appended to every registered file since the last scan.

        Only complete lines are taken until ``final``; a missing file (a server constructed but
        never started) is skipped.
        """
        with self._lock:
            for path, offset in list(self.files.items()):
                try:
                    with path.open("rb") as log:
                        log.seek(offset)
                        data = log.read()
                except FileNotFoundError:
                    continue
                if not final:
                    data = data[: data.rfind(b"\n") + 1]
                self.files[path] = offset + len(data)
                for line in data.decode("utf-8", "replace").splitlines():
                    self.file_lines += 1
                    self._check(str(path), line)

    def unread_files(self) -> list[Path]:
        """Registered files holding bytes not scanned yet (a server that never ran has none)."""
        unread = []
        for path, offset in self.files.items():
            try:
                if path.stat().st_size > offset:
                    unread.append(path)
            except FileNotFoundError:
                continue
        return unread

    def failing(self) -> list[Leak]:
        """Leaks that fail the session (not those pending the redaction fix)."""
        return [leak for leak in self.leaks if not (leak.pending and PENDING_REDACTION_FIX)]

    def report(self) -> str:
        """A summary, and every leak (the first 20) with its source."""
        lines = [
            f"token scan: {self.records} in-process log records, {len(self.files)} server log "
            f"files ({self.file_lines} lines), {len(self.tokens)} tokens"
        ]
        for leak in self.leaks[:20]:
            flag = " (pending the issue 9 redaction fix)" if leak.pending else ""
            lines.append(f"  LEAK of {leak.token!r} in {leak.source}{flag}: {leak.line}")
        return "\n".join(lines)


SCAN = LogScan()
_original_call_handlers: Any = None


def register_token(token: str, *, pending: bool = False) -> None:
    """Scan for ``token`` from now on (files are read after each test, so its own lines too)."""
    with SCAN._lock:
        SCAN.tokens[token] = SCAN.tokens.get(token, False) or pending


def register_log_file(path: Path) -> None:
    """A server's log file, to be scanned after each test and at session end."""
    SCAN.register_file(path)


def install() -> None:
    """Scan every record any logger emits in this process (idempotent)."""
    global _original_call_handlers
    if _original_call_handlers is not None:
        return
    original = logging.Logger.callHandlers
    _original_call_handlers = original

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        try:
            SCAN.scan_record(self.name, record)
        finally:
            original(self, record)

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]


def uninstall() -> None:
    """Undo ``install``."""
    global _original_call_handlers
    if _original_call_handlers is not None:
        logging.Logger.callHandlers = _original_call_handlers  # type: ignore[method-assign]
        _original_call_handlers = None
