"""Point `surge` processes at the Redis test server, each test under its own key prefix."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from conftest import require_component

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def redis_is_up() -> bool:
    """True when something answers PING on the Redis test port."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def drop_prefix(prefix: str) -> None:
    """Delete every key under ``prefix``."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Set SURGE_REDIS_URL/SURGE_REDIS_PREFIX for the `surge` processes this test starts."""
    require_component(redis_is_up(), f"no Redis server answers at {REDIS_URL}")
    prefix = f"surge-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("SURGE_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("SURGE_REDIS_PREFIX", prefix)
    yield prefix
    drop_prefix(prefix)
