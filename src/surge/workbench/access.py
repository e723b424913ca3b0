"""The Workbench's way past stream auth in ``surge dev``, and nothing else's.

At startup the dev server makes a random per-process key. Only a same-origin page gets it (from
``/__surge/api/session``); the Workbench connects with ``?surgeWorkbench=<key>``. Such an upgrade
is accepted without calling ``authenticate`` and carries ``WORKBENCH_CONTEXT``; every stream's
``can_access`` lets that context (and only that object) through. A wrong key is refused; without
the parameter, a connection is authenticated as usual. The key never reaches the logs.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from surge.steps.config import CanAccess, Subscription
from surge.steps.registry import Registry

__all__ = [
    "WORKBENCH_CONTEXT",
    "WORKBENCH_KEY_SCOPE",
    "WORKBENCH_QUERY",
    "WorkbenchAccess",
    "install_key_redaction",
    "is_same_origin",
    "key_matches",
    "new_key",
    "open_to_workbench",
]

WORKBENCH_QUERY: Final = "surgeWorkbench"
# The ASGI scope key under which the app hands the key to the upgrade check (dev only).
WORKBENCH_KEY_SCOPE: Final = "surge.workbench_key"


class _WorkbenchContext:
    """The auth context of the Workbench's own connections (a unique marker object)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<surge workbench>"


WORKBENCH_CONTEXT: Final = _WorkbenchContext()


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def key_matches(offered: str, key: str) -> bool:
    """Compare in constant time."""
    return hmac.compare_digest(offered.encode(), key.encode())


def is_same_origin(headers: Mapping[str, str]) -> bool:
    """True unless the request says it comes from another site (``Origin`` or ``Sec-Fetch-Site``).

    ``headers`` has lower-case names. No ``Origin`` (same-origin GETs, non-browser clients) is
    accepted; ``Origin: null`` is not.
    """
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host")
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


class WorkbenchAccess:
    """A stream's ``can_access`` that admits the Workbench and defers to the user's rule."""

    __slots__ = ("rule",)

    def __init__(self, rule: CanAccess) -> None:
        self.rule = rule

    def __call__(self, subscription: Subscription, auth_context: Any) -> bool | Awaitable[bool]:
        if auth_context is WORKBENCH_CONTEXT:
            return True
        return self.rule(subscription, auth_context)


def open_to_workbench(registry: Registry) -> Registry:
    """The same registry with every ``can_access`` wrapped in ``WorkbenchAccess`` (idempotent)."""
    streams = {
        name: config
        if config.can_access is None or isinstance(config.can_access, WorkbenchAccess)
        else dataclasses.replace(config, can_access=WorkbenchAccess(config.can_access))
        for name, config in registry.streams.items()
    }
    return dataclasses.replace(registry, streams=streams)


_KEY_IN_TEXT = re.compile(WORKBENCH_QUERY + r"=[^&\s\"']+")


class _RedactWorkbenchKey(logging.Filter):
    """uvicorn logs every upgrade's URL: replace the key in it with ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def _redact(text: str) -> str:
    return _KEY_IN_TEXT.sub(WORKBENCH_QUERY + "=[redacted]", text)


def install_key_redaction() -> None:
    """Add the key-redacting filter to uvicorn's server logger, once."""
    server_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _RedactWorkbenchKey) for f in server_logger.filters):
        server_logger.addFilter(_RedactWorkbenchKey())
