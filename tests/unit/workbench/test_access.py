"""The Workbench's key, its same-origin rule, the can_access bypass and the log redaction."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import BaseModel

from surge import StreamConfig, Subscription
from surge.steps.registry import Registry
from surge.workbench.access import (
    WORKBENCH_CONTEXT,
    WorkbenchAccess,
    install_key_redaction,
    is_local_host,
    is_same_origin,
    key_matches,
    new_key,
    open_to_workbench,
)


class Item(BaseModel):
    id: str


def nobody(sub: Subscription, ctx: Any) -> bool:
    return False


def test_new_keys_are_long_and_distinct() -> None:
    keys = {new_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(k) >= 40 for k in keys)


def test_key_matches_only_the_exact_key() -> None:
    key = new_key()
    assert key_matches(key, key)
    for other in ("", key[:-1], key + "a", key.upper(), "é" + key[1:]):
        assert not key_matches(other, key)


@pytest.mark.parametrize(
    ("headers", "same"),
    [
        ({}, True),
        ({"host": "127.0.0.1:3000"}, True),
        ({"host": "127.0.0.1:3000", "origin": "http://127.0.0.1:3000"}, True),
        ({"host": "LOCALHOST:3000", "origin": "http://localhost:3000"}, True),
        ({"host": "127.0.0.1:3000", "sec-fetch-site": "same-origin"}, True),
        ({"host": "127.0.0.1:3000", "sec-fetch-site": "none"}, True),
        ({"host": "127.0.0.1:3000", "origin": "http://127.0.0.1:3001"}, False),
        ({"host": "127.0.0.1:3000", "origin": "http://evil.example"}, False),
        ({"host": "127.0.0.1:3000", "origin": "null"}, False),
        ({"origin": "http://127.0.0.1:3000"}, False),
        ({"host": "127.0.0.1:3000", "sec-fetch-site": "cross-site"}, False),
        ({"host": "127.0.0.1:3000", "sec-fetch-site": "same-site"}, False),
    ],
)
def test_is_same_origin(headers: dict[str, str], same: bool) -> None:
    assert is_same_origin(headers) is same


def test_workbench_access_admits_only_the_marker_and_defers_to_the_rule() -> None:
    seen: list[Any] = []

    def rule(sub: Subscription, ctx: Any) -> bool:
        seen.append(ctx)
        return bool(ctx == {"user": "ann"})

    access = WorkbenchAccess(rule)
    sub = Subscription(groupId="g")
    assert access(sub, WORKBENCH_CONTEXT) is True
    assert seen == []
    assert access(sub, {"user": "ann"}) is True
    assert access(sub, None) is False
    assert access(sub, "<surge workbench>") is False
    assert seen == [{"user": "ann"}, None, "<surge workbench>"]


def test_open_to_workbench_wraps_rules_once_and_keeps_open_streams_open() -> None:
    registry = Registry.build(
        [
            (StreamConfig(name="open", schema=Item), None),
            (StreamConfig(name="closed", schema=Item, can_access=nobody), None),
        ],
        [],
    )
    opened = open_to_workbench(registry)
    closed = opened.streams["closed"]
    assert isinstance(closed.can_access, WorkbenchAccess)
    assert closed.can_access.rule is nobody
    assert opened.streams["open"].can_access is None
    assert closed.item_schema.model is Item
    # The original registry is untouched; wrapping again changes nothing.
    assert registry.streams["closed"].can_access is nobody
    again = open_to_workbench(opened)
    assert again.streams["closed"] is closed
    assert again.routes == registry.routes


def test_key_redaction_hides_the_key_in_uvicorns_upgrade_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_key_redaction()
    install_key_redaction()  # idempotent
    server_logger = logging.getLogger("uvicorn.error")
    filters = [f for f in server_logger.filters if type(f).__name__ == "_RedactSecrets"]
    assert len(filters) == 1
    server_logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    try:
        server_logger.info(
            '%s - "WebSocket %s" [accepted]', "ip", "/?a=1&surgeWorkbench=SECRET&b=2"
        )
        server_logger.info("GET /?surgeWorkbench=SECRET2 HTTP/1.1")
        # Spelled another way that decodes to the same parameter name.
        server_logger.info("GET /?surge%57orkbench=SECRET3 HTTP/1.1")
    finally:
        server_logger.removeHandler(caplog.handler)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "SECRET" not in text
    assert "surgeWorkbench=[redacted]&b=2" in text


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("localhost:3000", (), True),
        ("LOCALHOST", (), True),
        ("app.localhost:3000", (), True),
        ("127.0.0.1:3000", (), True),
        ("127.5.6.7", (), True),
        ("[::1]:3000", (), True),
        ("evil.example:3000", (), False),
        ("localhost.evil.example:3000", (), False),
        ("10.0.0.5:3000", (), False),
        ("devbox.lan:3000", ("devbox.lan",), True),
        ("", (), False),
    ],
)
def test_only_this_machines_host_names_are_local(
    host: str, allowed: tuple[str, ...], expected: bool
) -> None:
    headers = {"host": host} if host else {}
    assert is_local_host(headers, allowed) is expected
