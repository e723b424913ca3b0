"""The ``ctx.streams.<name>`` facade over the memory adapter: validation, ids, values, send."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from surge import ConfigError, StreamConfig, ValidationError
from surge.streams.feed import Change, EphemeralEvent, FeedMessage
from surge.streams.stores.memory import MemoryStreamAdapter
from surge.streams.stream import Stream, Streams


class Todo(BaseModel):
    id: str
    description: str
    done: bool = False


class Note(BaseModel):
    text: str


async def make(schema: Any, name: str = "todo") -> tuple[Stream, list[FeedMessage]]:
    fed: list[FeedMessage] = []
    adapter = MemoryStreamAdapter()
    await adapter.open(fed.append)
    return Stream(StreamConfig(name=name, schema=schema), adapter), fed


async def test_set_validates_and_returns_the_model_and_feeds_a_create() -> None:
    todo, fed = await make(Todo)
    value = await todo.set("inbox", "t1", {"id": "t1", "description": "milk"})
    assert value == Todo(id="t1", description="milk")
    assert isinstance(fed[0], Change) and fed[0].kind == "create"
    assert fed[0].item == {"id": "t1", "description": "milk", "done": False}


async def test_invalid_item_raises_naming_the_field_and_nothing_is_stored_or_sent() -> None:
    todo, fed = await make(Todo)
    with pytest.raises(ValidationError) as info:
        await todo.set("inbox", "t1", {"id": "t1", "description": 5})
    assert info.value.errors[0]["loc"] == ["description"]
    assert "description" in str(info.value)
    assert fed == []
    assert await todo.get("inbox", "t1") is None


@pytest.mark.parametrize("bad", ["", "x" * 257, "a\nb", "a\x85b", 7, None])
async def test_hostile_ids_are_refused_before_storage(bad: Any) -> None:
    todo, fed = await make(Todo)
    with pytest.raises(ValidationError):
        await todo.set("inbox", bad, {"id": "x", "description": "d"})
    with pytest.raises(ValidationError):
        await todo.set(bad, "t1", {"id": "t1", "description": "d"})
    assert fed == []


async def test_key_wins_over_a_different_id_in_the_data() -> None:
    todo, _ = await make(Todo)
    value = await todo.set("inbox", "t1", {"id": "other", "description": "d"})
    assert value.id == "t1"
    assert (await todo.get("inbox", "t1")).id == "t1"


async def test_schema_without_id_field_still_stores_and_sends_the_id() -> None:
    notes, fed = await make(Note, name="note")
    value = await notes.set("g", "n1", {"text": "hi"})
    assert value == Note(text="hi")
    assert isinstance(fed[0], Change) and fed[0].item == {"text": "hi", "id": "n1"}
    assert await notes.get_group("g") == [Note(text="hi")]


async def test_json_schema_streams_return_dicts() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    counters, _ = await make(schema, name="counter")
    assert await counters.set("g", "c", {"n": 1}) == {"n": 1, "id": "c"}
    with pytest.raises(ValidationError, match="n"):
        await counters.set("g", "c", {"n": "one"})
    assert await counters.get("g", "c") == {"n": 1, "id": "c"}


async def test_update_get_group_order_and_delete() -> None:
    todo, fed = await make(Todo)
    await todo.set("inbox", "a", {"id": "a", "description": "1"})
    await todo.set("inbox", "b", {"id": "b", "description": "2"})
    await todo.set("inbox", "a", {"id": "a", "description": "1!"})
    assert [t.description for t in await todo.get_group("inbox")] == ["1!", "2"]
    assert [m.kind for m in fed if isinstance(m, Change)] == ["create", "create", "update"]
    deleted = await todo.delete("inbox", "a")
    assert deleted == Todo(id="a", description="1!")
    assert await todo.delete("inbox", "a") is None
    assert [m.kind for m in fed if isinstance(m, Change)][-1] == "delete"
    assert len(fed) == 4  # the second delete sent nothing


async def test_send_goes_to_the_feed_only() -> None:
    todo, fed = await make(Todo)
    await todo.send({"groupId": "inbox"}, {"type": "typing", "data": {"u": 1}})
    await todo.send({"groupId": "inbox", "id": "t1"}, {"type": "reaction", "data": "+1"})
    assert fed == [
        EphemeralEvent("todo", "inbox", None, {"type": "typing", "data": {"u": 1}}),
        EphemeralEvent("todo", "inbox", "t1", {"type": "reaction", "data": "+1"}),
    ]
    assert await todo.get_group("inbox") == []


async def test_send_refuses_bad_events_in_the_caller() -> None:
    todo, fed = await make(Todo)
    with pytest.raises(ValidationError, match="type"):
        await todo.send({"groupId": "inbox"}, {"data": 1})
    with pytest.raises(ValidationError, match="JSON"):
        await todo.send({"groupId": "inbox"}, {"type": "x", "data": object()})
    with pytest.raises(ValidationError):
        await todo.send({}, {"type": "x"})
    assert fed == []


async def test_streams_by_attribute_and_by_key() -> None:
    todo, _ = await make(Todo)
    streams = Streams({"todo": todo})
    assert streams.todo is streams["todo"] is todo
    assert list(streams) == ["todo"]
    with pytest.raises(AttributeError, match=r"no stream named 'nope' \(streams: todo\)"):
        _ = streams.nope


# -- update and TTL ----------------------------------------------------------------------------


class Reply(BaseModel):
    id: str
    content: str = ""
    status: str = "streaming"
    tokens: int = 0


async def test_update_returns_old_and_new_models_and_a_version() -> None:
    reply, fed = await make(Reply, "reply")
    await reply.set("c", "r1", {"id": "r1"})

    result = await reply.update(
        "c",
        "r1",
        [
            {"type": "append", "path": "content", "value": "Hi"},
            {"type": "increment", "path": "tokens", "by": 1},
        ],
    )

    assert result.old_value == Reply(id="r1")
    assert result.new_value == Reply(id="r1", content="Hi", tokens=1)
    assert isinstance(fed[-1], Change) and fed[-1].kind == "update"
    assert fed[-1].item == {"id": "r1", "content": "Hi", "status": "streaming", "tokens": 1}
    assert result.version == fed[-1].seq


async def test_an_update_the_schema_refuses_names_the_field_and_changes_nothing() -> None:
    reply, fed = await make(Reply, "reply")
    await reply.set("c", "r1", {"id": "r1"})

    with pytest.raises(ValidationError) as info:
        await reply.update("c", "r1", [{"type": "set", "path": "tokens", "value": "many"}])

    assert info.value.errors[0]["loc"] == ["tokens"]
    assert "tokens" in str(info.value)
    assert len(fed) == 1
    assert await reply.get("c", "r1") == Reply(id="r1")


async def test_an_update_of_a_missing_item_creates_it_when_the_result_is_valid() -> None:
    note, fed = await make(Note, "note")

    made = await note.update("g", "n1", [{"type": "append", "path": "text", "value": "hello"}])
    with pytest.raises(ValidationError, match=r"no item 'n2'.*text"):
        await note.update("g", "n2", [{"type": "set", "path": "other", "value": 1}])

    assert made.old_value is None and made.new_value == Note(text="hello")
    assert [c.kind for c in fed if isinstance(c, Change)] == ["create"]
    assert await note.get("g", "n2") is None


async def test_update_with_a_stale_version_raises_conflict_error() -> None:
    from surge import ConflictError
    from surge.errors import error_mapping

    reply, _ = await make(Reply, "reply")
    first = await reply.update("c", "r1", [{"type": "set", "path": "status", "value": "a"}])
    await reply.update("c", "r1", [{"type": "set", "path": "status", "value": "b"}])

    with pytest.raises(ConflictError) as info:
        await reply.update(
            "c", "r1", [{"type": "set", "path": "status", "value": "c"}], if_version=first.version
        )

    assert (await reply.get("c", "r1")).status == "b"
    mapping = error_mapping(info.value)
    assert (mapping.http_status, mapping.wire_code) == (409, "CONFLICT")


@pytest.mark.parametrize(
    "kwargs",
    [{"ttl": 0}, {"ttl": -1}, {"ttl": "1"}, {"ttl": True}, {"ttl": float("inf")}],
)
async def test_bad_ttls_and_versions_are_refused_before_storage(kwargs: dict[str, Any]) -> None:
    reply, fed = await make(Reply, "reply")
    with pytest.raises(ValidationError):
        await reply.set("c", "r1", {"id": "r1"}, **kwargs)
    with pytest.raises(ValidationError):
        await reply.update("c", "r1", [{"type": "set", "path": "status", "value": "x"}], **kwargs)
    with pytest.raises(ValidationError):
        await reply.update("c", "r1", [{"type": "remove", "path": "x"}], if_version=-1)
    assert fed == []


async def test_the_stream_default_ttl_applies_to_set_and_creating_updates() -> None:
    fed: list[FeedMessage] = []
    adapter = MemoryStreamAdapter()
    await adapter.open(fed.append)
    reply = Stream(StreamConfig(name="reply", schema=Reply, ttl=0.2), adapter)
    try:
        await reply.set("c", "by-set", {"id": "by-set"})
        await reply.update("c", "by-update", [{"type": "set", "path": "status", "value": "x"}])
        await reply.set("c", "longer", {"id": "longer"}, ttl=3600)

        deadline = asyncio.get_running_loop().time() + 10
        while len([m for m in fed if isinstance(m, Change) and m.kind == "delete"]) < 2:
            assert asyncio.get_running_loop().time() < deadline, "no expiry within 10 s"
            await asyncio.sleep(0.01)

        assert [item.id for item in await reply.get_group("c")] == ["longer"]
    finally:
        await adapter.close()


@pytest.mark.parametrize("bad", [0, -5, "10", True, float("nan")])
def test_a_stream_ttl_must_be_a_positive_number(bad: Any) -> None:
    with pytest.raises(ConfigError, match="ttl"):
        StreamConfig(name="reply", schema=Reply, ttl=bad)


async def test_get_group_pages_back_with_more_and_stays_a_list() -> None:
    notes, _ = await make(Note, "notes")
    for n in range(5):
        await notes.set("g", f"n{n}", {"text": str(n)})

    whole = await notes.get_group("g")
    newest = await notes.get_group("g", limit=2)
    older = await notes.get_group("g", limit=2, before=newest.more)
    oldest = await notes.get_group("g", limit=2, before=older.more)

    assert isinstance(whole, list) and whole.more is None and len(whole) == 5
    assert [n.text for n in newest] == ["3", "4"]
    assert [n.text for n in older] == ["1", "2"]
    assert ([n.text for n in oldest], oldest.more) == (["0"], None)
    assert all(isinstance(n, Note) for n in newest)


async def test_get_group_refuses_a_bad_limit_or_cursor() -> None:
    notes, _ = await make(Note, "notes")

    with pytest.raises(ValidationError, match="limit"):
        await notes.get_group("g", limit=0)
    with pytest.raises(ValidationError, match="cursor"):
        await notes.get_group("g", before="not-a-cursor")


@pytest.mark.parametrize("bad", [0, -5, True, 2.5, "50", 100_001])
def test_sync_limit_must_be_a_whole_number_in_range(bad: Any) -> None:
    with pytest.raises(ConfigError, match="syncLimit"):
        StreamConfig(name="chat", schema=Note, sync_limit=bad)


def test_sync_limit_is_accepted_typed_and_in_both_dict_spellings() -> None:
    from surge.steps.config import normalize_stream_config

    typed = StreamConfig(name="chat", schema=Note, sync_limit=50)
    camel = normalize_stream_config({"name": "chat", "schema": {"type": "object"}, "syncLimit": 50})
    snake = normalize_stream_config({"name": "chat", "schema": {"type": "object"}, "sync_limit": 7})

    assert (typed.sync_limit, camel.sync_limit, snake.sync_limit) == (50, 50, 7)
    with pytest.raises(ConfigError, match="syncLimit"):
        normalize_stream_config({"name": "chat", "schema": {"type": "object"}, "syncLimit": "5"})
    with pytest.raises(ConfigError, match="did you mean 'syncLimit'"):
        normalize_stream_config({"name": "chat", "schema": {"type": "object"}, "syncLimt": 5})
