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
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from surge.server.decisions import Refusal, UpgradeDecision
from surge.steps.config import CanAccess, Subscription
from surge.steps.registry import Registry

__all__ = [
    "WORKBENCH_CONTEXT",
    "WORKBENCH_QUERY",
    "WorkbenchAccess",
    "install_key_redaction",
    "is_local_host",
    "is_same_origin",
    "key_matches",
    "new_key",
    "open_to_workbench",
    "workbench_upgrade",
]

logger = logging.getLogger("surge.server.upgrade")  # the upgrade's log lines stay together

WORKBENCH_QUERY: Final = "surgeWorkbench"


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


def _host_name(host: str) -> str:
    """``example.com:3000`` -> ``example.com``; ``[::1]:3000`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def is_local_host(headers: Mapping[str, str], allowed: Iterable[str] = ()) -> bool:
    """True when ``Host`` names this machine: ``localhost`` (or ``*.localhost``), a loopback
    address, or one of ``allowed`` (``Config.workbench_hosts``).

    DNS rebinding makes a hostile page same-origin with the dev server under the attacker's
    host name (``evil.example:3000``); checking the Host refuses exactly that shape.
    """
    host = headers.get("host")
    if not host:
        return False
    name = _host_name(host).rstrip(".")
    if name in {a.lower() for a in allowed}:
        return True
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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


def workbench_upgrade(
    offered: str, key: str, headers: Mapping[str, str], hosts: Iterable[str]
) -> UpgradeDecision:
    """Decide an upgrade that offers the Workbench's key: right key, local Host, same origin."""
    if not key_matches(offered, key):
        logger.warning("WebSocket upgrade refused: wrong workbench key")
        return UpgradeDecision(refusal=Refusal(401, "authentication failed"))
    if not is_local_host(headers, hosts):
        logger.warning("WebSocket upgrade refused: workbench key under a foreign Host")
        return UpgradeDecision(refusal=Refusal(403, "host not allowed"))
    if not is_same_origin(headers):
        logger.warning("WebSocket upgrade refused: workbench key from another origin")
        return UpgradeDecision(refusal=Refusal(403, "origin not allowed"))
    return UpgradeDecision(auth_context=WORKBENCH_CONTEXT)


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


def install_key_redaction() -> None:
    """Redact the key's query parameter from every log line (by its decoded name)."""
    from surge.server.logs import install_token_redaction, register_sensitive_param

    register_sensitive_param(WORKBENCH_QUERY)
    install_token_redaction()
