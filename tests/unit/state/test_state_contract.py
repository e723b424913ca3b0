"""One contract suite over every ``StateStore`` (memory, SQLite file, Redis) and the facade."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from conftest import require_component
from redis_server import REDIS_TEST_URL, drop_redis_keys, redis_is_up
from surge.errors import ValidationError
from surge.state import State, StateStore
from surge.state.memory import MemoryStateStore
from surge.state.sqlite import SqliteStateStore


def _redis(tmp_path: Path) -> StateStore:
    require_component(redis_is_up(), f"no Redis server answers at {REDIS_TEST_URL}")
    from surge.state.redis import RedisStateStore

    return RedisStateStore(REDIS_TEST_URL, prefix=f"surge-test-{uuid.uuid4().hex}")


STORES: dict[str, Callable[[Path], StateStore]] = {
    "memory": lambda tmp_path: MemoryStateStore(),
    "file": lambda tmp_path: SqliteStateStore(tmp_path / ".surge" / "state.db"),
    "redis": _redis,
}


@pytest.fixture(params=sorted(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    made = STORES[request.param](tmp_path)
    await made.open()
    try:
        yield made
    finally:
        await made.close()
        prefix = getattr(made, "prefix", None)
        if prefix is not None:
            drop_redis_keys(prefix)


async def test_set_then_get_returns_the_value_and_missing_keys_are_none(store: StateStore) -> None:
    assert await store.get("g", "k") is None
    await store.set("g", "k", b'{"a":1}')
    assert await store.get("g", "k") == b'{"a":1}'
    assert await store.get("other", "k") is None


async def test_set_replaces_and_delete_returns_the_removed_value(store: StateStore) -> None:
    await store.set("g", "k", b"1")
    await store.set("g", "k", b"2")
    assert await store.get("g", "k") == b"2"
    assert await store.delete("g", "k") == b"2"
    assert await store.delete("g", "k") is None
    assert await store.get("g", "k") is None


async def test_get_group_lists_every_value_and_clear_removes_only_that_group(
    store: StateStore,
) -> None:
    for n in range(3):
        await store.set("g", f"k{n}", str(n).encode())
    await store.set("h", "k", b"9")
    assert sorted(await store.get_group("g")) == [b"0", b"1", b"2"]
    await store.clear("g")
    assert await store.get_group("g") == []
    assert await store.get("h", "k") == b"9"


async def test_local_stores_keep_creation_order_when_a_value_is_replaced(
    store: StateStore,
) -> None:
    if store.is_distributed:
        pytest.skip("Redis hashes keep no order")
    for key in ("b", "a", "c"):
        await store.set("g", key, key.encode())
    await store.set("g", "b", b"B")
    assert await store.get_group("g") == [b"B", b"a", b"c"]


async def test_file_store_keeps_state_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SqliteStateStore(path)
    await first.open()
    await first.set("trace", "job", b'"done"')
    await first.close()
    second = SqliteStateStore(path)
    await second.open()
    try:
        assert await second.get("trace", "job") == b'"done"'
    finally:
        await second.close()


class Job(BaseModel):
    id: str
    progress: int


async def test_facade_round_trips_json_values_and_models(store: StateStore) -> None:
    state = State(store)
    assert await state.set("g", "job", Job(id="j", progress=5)) == Job(id="j", progress=5)
    assert await state.get("g", "job") == {"id": "j", "progress": 5}
    await state.set("g", "n", 3)
    assert sorted(map(str, await state.getGroup("g"))) == ["3", "{'id': 'j', 'progress': 5}"]
    assert await state.delete("g", "n") == 3
    await state.clear("g")
    assert await state.get_group("g") == []


async def test_facade_refuses_bad_ids_and_values_without_storing(store: StateStore) -> None:
    state = State(store)
    with pytest.raises(ValidationError, match="group must not be empty"):
        await state.set("", "k", 1)
    with pytest.raises(ValidationError, match="not JSON-serializable"):
        await state.set("g", "k", object())
    assert await state.get_group("g") == []
