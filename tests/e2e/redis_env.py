"""Point `surge` processes at the Redis test server, each test under its own key prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from conftest import require_component
from redis_server import REDIS_TEST_URL, drop_redis_keys, redis_is_up

REDIS_URL = REDIS_TEST_URL


@pytest.fixture
def redis_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Set SURGE_REDIS_URL/SURGE_REDIS_PREFIX for the `surge` processes this test starts."""
    require_component(redis_is_up(), f"no Redis server answers at {REDIS_URL}")
    prefix = f"surge-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("SURGE_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("SURGE_REDIS_PREFIX", prefix)
    yield prefix
    drop_redis_keys(prefix)
