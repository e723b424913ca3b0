"""Logging hygiene: stream tokens never reach the logs.

Stream tokens travel in the upgrade's URL (``?authToken=``) and in ``Sec-WebSocket-Protocol:
Authorization,<token>``; uvicorn logs the URL of every upgrade (INFO) and, at DEBUG, the request
line and headers, all through the ``uvicorn.error`` logger. The filter redacts both forms. It is
installed when the uvicorn config is built and again at app startup (each ``--workers`` process).
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["install_token_redaction", "redact_tokens"]

_TOKEN_IN_TEXT = re.compile(r"(authToken=|Authorization,\s*)[^&\s,\"']+")


def redact_tokens(value: Any) -> Any:
    """Return ``value`` with stream tokens replaced by ``[redacted]`` (non-strings unchanged)."""
    return _TOKEN_IN_TEXT.sub(r"\1[redacted]", value) if isinstance(value, str) else value


class _RedactStreamTokens(logging.Filter):
    """Replace stream tokens in a record's message and arguments with ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(arg) for arg in record.args)
        return True


def install_token_redaction() -> None:
    """Add the redacting filter to uvicorn's server logger, once."""
    server_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _RedactStreamTokens) for f in server_logger.filters):
        server_logger.addFilter(_RedactStreamTokens())
