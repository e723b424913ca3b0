"""Strict configs (issue 12 item 4): every typo is a ConfigError naming the file, the key and the
closest valid key; nothing is silently ignored."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from surge.errors import ConfigError
from surge.steps.config import (
    ApiRouteConfig,
    CronConfig,
    EventConfig,
    StreamConfig,
    normalize_api_config,
    normalize_cron_config,
    normalize_event_config,
    normalize_stream_config,
)
from surge.steps.discovery import discover
from surge.steps.strict import check_json_schema, edit_distance

OBJECT = {"type": "object"}
API = {"type": "api", "name": "CreateTodo", "method": "POST", "path": "/todo"}
EVENT = {"type": "event", "name": "Job", "subscribes": ["job"]}
CRON = {"type": "cron", "name": "Tick", "cron": "* * * * *"}
STREAM = {"name": "todo", "schema": OBJECT}


class Todo(BaseModel):
    id: str


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def error_of(build: Callable[[], Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        build()
    return str(caught.value)


# -- unknown keys in dict configs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("normalize", "raw", "message"),
    [
        (
            normalize_api_config,
            {**API, "bodySchem": OBJECT},
            "step 'CreateTodo': unknown key 'bodySchem' (did you mean 'bodySchema'?)",
        ),
        (
            normalize_api_config,
            {**API, "responseSchemas": {}},
            "unknown key 'responseSchemas' (did you mean 'responseSchema'?)",
        ),
        (
            normalize_event_config,
            {**EVENT, "subscribe": ["x"]},
            "step 'Job': unknown key 'subscribe' (did you mean 'subscribes'?)",
        ),
        (
            normalize_event_config,
            {**EVENT, "infrastructure": {"queue": {"maxRetry": 5}}},
            "step 'Job': infrastructure.queue: unknown key 'maxRetry' (did you mean 'maxRetries'?)",
        ),
        (
            normalize_event_config,
            {**EVENT, "infrastructure": {"handlr": {}}},
            "infrastructure: unknown key 'handlr' (did you mean 'handler'?)",
        ),
        (
            normalize_cron_config,
            {**CRON, "emit": ["t"]},
            "step 'Tick': unknown key 'emit' (did you mean 'emits'?)",
        ),
        (
            normalize_cron_config,
            {**CRON, "infrastructure": {"handler": {"timout": 3}}},
            "infrastructure.handler: unknown key 'timout' (did you mean 'timeout'?)",
        ),
        (
            normalize_stream_config,
            {**STREAM, "canAcess": None},
            "stream 'todo': unknown key 'canAcess' (did you mean 'canAccess'?)",
        ),
        (
            normalize_stream_config,
            {**STREAM, "baseConfig": {"storagetype": "default"}},
            "baseConfig: unknown key 'storagetype' (did you mean 'storageType'?)",
        ),
    ],
)
def test_an_unknown_dict_key_names_the_closest_valid_key(
    normalize: Callable[[Any], Any], raw: dict[str, Any], message: str
) -> None:
    assert message in error_of(lambda: normalize(raw))


def test_an_unknown_key_far_from_every_key_lists_the_known_ones() -> None:
    message = error_of(lambda: normalize_api_config({**API, "zzz": 1}))
    assert "unknown key 'zzz'; known keys: type, name, description" in message
    assert "bodySchema" in message


def test_motia_keys_surge_does_not_implement_say_so() -> None:
    message = error_of(lambda: normalize_api_config({**API, "middleware": "auth"}))
    assert "middleware must be a list of async functions (req, ctx, next)" in message
    delayed = {**EVENT, "infrastructure": {"queue": {"delaySeconds": 5}}}
    assert "'delaySeconds' is not supported yet" in error_of(
        lambda: normalize_event_config(delayed)
    )


def test_every_documented_motia_key_is_accepted() -> None:
    normalize_api_config(
        {
            **API,
            "description": "d",
            "emits": ["a"],
            "virtualEmits": ["b"],
            "virtualSubscribes": ["/c"],
            "flows": ["f"],
            "bodySchema": OBJECT,
            "responseSchema": {"200": OBJECT},
            "queryParams": [{"name": "q", "description": "a query"}],
            "includeFiles": ["x.txt"],
        }
    )
    normalize_event_config(
        {
            **EVENT,
            "description": "d",
            "emits": [],
            "virtualEmits": [],
            "virtualSubscribes": [],
            "input": OBJECT,
            "flows": [],
            "includeFiles": [],
            "infrastructure": {
                "handler": {"timeout": 5, "ram": 1024, "cpu": 1, "machineType": "memory"},
                "queue": {"type": "fifo", "maxRetries": 2, "visibilityTimeout": 9},
            },
        }
    )
    normalize_cron_config(
        {**CRON, "description": "d", "emits": [], "virtualEmits": [], "flows": []}
    )
    normalize_stream_config(
        {**STREAM, "baseConfig": {"storageType": "default"}, "canAccess": lambda s, c: True}
    )


# -- unknown keywords in typed configs -----------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: ApiRouteConfig(name="A", method="GET", path="/a", bodySchema=OBJECT),  # type: ignore[call-arg]
            "ApiRouteConfig('A'): unknown keyword 'bodySchema' (did you mean 'body_schema'?)",
        ),
        (
            lambda: ApiRouteConfig(name="A", method="GET", path="/a", respons_schema={}),  # type: ignore[call-arg]
            "unknown keyword 'respons_schema' (did you mean 'response_schema'?)",
        ),
        (
            lambda: EventConfig(name="E", subscribes=["t"], max_retry=2),  # type: ignore[call-arg]
            "EventConfig('E'): unknown keyword 'max_retry' (did you mean 'max_retries'?)",
        ),
        (
            lambda: CronConfig(name="C", cron="* * * * *", timout=1),  # type: ignore[call-arg]
            "CronConfig('C'): unknown keyword 'timout' (did you mean 'timeout'?)",
        ),
        (
            lambda: StreamConfig(name="todo", schema=Todo, canAccess=None),  # type: ignore[call-arg]
            "StreamConfig('todo'): unknown keyword 'canAccess' (did you mean 'can_access'?)",
        ),
    ],
)
def test_an_unknown_keyword_of_a_typed_config_names_the_closest_field(
    build: Callable[[], Any], message: str
) -> None:
    assert message in error_of(build)


def test_a_misspelled_http_method_names_the_closest_method() -> None:
    message = error_of(lambda: normalize_api_config({**API, "method": "PSOT"}))
    assert "method 'PSOT' is not an HTTP method (did you mean 'POST'?)" in message


# -- storageType ---------------------------------------------------------------------------------


def test_an_unknown_storage_type_names_default() -> None:
    raw = {**STREAM, "baseConfig": {"storageType": "defualt"}}
    message = error_of(lambda: normalize_stream_config(raw))
    assert "stream 'todo': baseConfig storageType 'defualt' is not valid" in message
    assert "(did you mean 'default'?)" in message
    typed = StreamConfig(name="todo", schema=Todo, base_config={"storageType": "redis"})
    assert "storageType 'redis' is not valid (expected one of 'default')" in error_of(
        lambda: normalize_stream_config(typed)
    )


def test_a_custom_storage_type_points_at_the_adapter() -> None:
    raw = {**STREAM, "baseConfig": {"storageType": "custom", "factory": None}}
    message = error_of(lambda: normalize_stream_config(raw))
    assert "storageType 'custom' is not supported" in message
    assert "Config(adapters=...)" in message


# -- JSON Schema ---------------------------------------------------------------------------------


def test_an_invalid_json_schema_is_checked_against_its_metaschema() -> None:
    raw = {**API, "bodySchema": {"type": "object", "properties": {"n": {"type": "strin"}}}}
    message = error_of(lambda: normalize_api_config(raw))
    assert "step 'CreateTodo' bodySchema: invalid JSON Schema at properties.n.type" in message
    assert "(did you mean 'string'?)" in message
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "minLength": -1}
    assert "invalid JSON Schema at minLength" in error_of(
        lambda: normalize_event_config({**EVENT, "input": draft7})
    )


@pytest.mark.parametrize(
    ("normalize", "raw", "message"),
    [
        (
            normalize_api_config,
            {**API, "bodySchema": {"type": "object", "requried": ["n"]}},
            "step 'CreateTodo' bodySchema: unknown JSON Schema keyword 'requried' "
            "(did you mean 'required'?); prefix your own keys with 'x-'",
        ),
        (
            normalize_api_config,
            {
                **API,
                "responseSchema": {
                    "200": {
                        "type": "object",
                        "properties": {"n": {"type": "integer", "minimun": 0}},
                    }
                },
            },
            "responseSchema[200]: unknown JSON Schema keyword 'minimun' at properties.n "
            "(did you mean 'minimum'?)",
        ),
        (
            normalize_event_config,
            {**EVENT, "input": {"type": "object", "propertes": {}}},
            "step 'Job' input: unknown JSON Schema keyword 'propertes' (did you mean 'properties'?)",
        ),
        (
            normalize_stream_config,
            {"name": "todo", "schema": {"type": "array", "items": {"tpye": "string"}}},
            "stream 'todo' schema: unknown JSON Schema keyword 'tpye' at items (did you mean 'type'?)",
        ),
        (
            normalize_stream_config,
            {"name": "todo", "schema": {"anyOf": [OBJECT, {"descripton": "x"}]}},
            "keyword 'descripton' at anyOf.1 (did you mean 'description'?)",
        ),
    ],
)
def test_a_misspelled_json_schema_keyword_names_the_keyword(
    normalize: Callable[[Any], Any], raw: dict[str, Any], message: str
) -> None:
    assert message in error_of(lambda: normalize(raw))


def test_custom_keys_far_from_keywords_x_prefixed_keys_and_property_names_pass() -> None:
    schema = {
        "type": "object",
        "x-requried": True,  # x- keys are always the user's
        "unit": "kg",  # an annotation no keyword is close to (short keywords are not matched)
        "example": {"requried": 1},  # OpenAPI's keyword; instance values are not schemas
        "properties": {"requried": {"type": "string"}, "tpye": {"const": {"minimun": 1}}},
        "required": ["requried"],
    }
    check_json_schema(schema, what="s", field="schema")


def test_edit_distance_counts_a_transposition_as_one() -> None:
    assert edit_distance("requried", "required") == 1
    assert edit_distance("minimun", "minimum") == 1
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("", "ab") == 2


# -- through discovery: the file and the line ----------------------------------------------------


def test_a_dict_config_typo_names_the_file_the_line_and_the_closest_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "steps/create_step.py",
        """
        config = {
            "type": "api",
            "name": "CreateTodo",
            "method": "POST",
            "path": "/todo",
            "bodySchem": {"type": "object"},
        }

        async def handler(req, ctx):
            return {"status": 200, "body": {}}
        """,
    )
    message = error_of(lambda: discover(tmp_path))
    assert message == (
        f"{path}: line 6: step 'CreateTodo': unknown key 'bodySchem' (did you mean 'bodySchema'?)"
    )


def test_a_typed_config_typo_names_the_file_and_the_keyword_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "steps/todo_stream.py",
        """
        from pydantic import BaseModel
        from surge import StreamConfig

        class Todo(BaseModel):
            id: str

        config = StreamConfig(
            name="todo",
            schema=Todo,
            base_confg={"storageType": "default"},
        )
        """,
    )
    message = error_of(lambda: discover(tmp_path))
    assert message.startswith(f"{path}: line 10: StreamConfig('todo'): unknown keyword")
    assert "(did you mean 'base_config'?)" in message


def test_a_schema_typo_names_the_file_and_the_schema_key_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "steps/todo_stream.py",
        """
        config = {
            "name": "todo",
            "schema": {"type": "object", "requried": ["id"]},
        }
        """,
    )
    message = error_of(lambda: discover(tmp_path))
    assert message.startswith(f"{path}: line 3: stream 'todo' schema: unknown JSON Schema keyword")


def test_a_storage_type_typo_names_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "steps/todo_stream.py",
        """
        config = {"name": "todo", "schema": {"type": "object"}, "baseConfig": {"storageType": "defualt"}}
        """,
    )
    message = error_of(lambda: discover(tmp_path))
    assert message.startswith(f"{path}: line 1: stream 'todo': baseConfig storageType 'defualt'")


def test_a_handler_with_a_near_name_is_suggested(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "steps/a_step.py",
        """
        config = {"type": "api", "name": "A", "method": "GET", "path": "/a"}

        async def handle(req, ctx):
            return {"status": 200, "body": {}}
        """,
    )
    message = error_of(lambda: discover(tmp_path))
    assert message == f"{path}: API step 'A' has no `handler` function (did you mean 'handle'?)"


def test_a_handler_with_the_wrong_signature_shows_the_expected_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "steps/a_step.py",
        """
        config = {"type": "event", "name": "E", "subscribes": ["t"]}

        async def handler(input):
            return None
        """,
    )
    message = error_of(lambda: discover(tmp_path))
    assert message == (
        f"{path}: line 3: event step 'E': `handler` must take 2 argument(s): "
        "async def handler(input, ctx)"
    )


def test_a_misspelled_step_type_names_the_closest_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "steps/a_step.py",
        """
        config = {"type": "evnt", "name": "E", "subscribes": ["t"]}

        async def handler(input, ctx):
            return None
        """,
    )
    message = error_of(lambda: discover(tmp_path))
    assert message.startswith(f"{path}: line 1: unknown step type 'evnt'")
    assert "(did you mean 'event'?)" in message


@pytest.mark.parametrize("example", ["todo", "chat", "ai-chat", "fastapi"])
def test_the_examples_load_under_the_strict_rules(example: str) -> None:
    root = Path(__file__).resolve().parents[3] / "examples" / example
    registry = discover(root)
    assert registry.streams
