"""Presence options of a stream (issue 14 item 5), typed and in Motia's dict form, checked
strictly: a misspelling names the closest key, options without ``presence=True`` are refused."""

from __future__ import annotations

import pytest

from surge.errors import ConfigError
from surge.steps.config import StreamConfig, normalize_stream_config

STREAM = {"name": "chat", "schema": {"type": "object"}}


def test_the_dict_form_takes_the_camel_case_presence_keys() -> None:
    config = normalize_stream_config(
        {**STREAM, "presence": True, "presenceKey": "userId", "presenceMeta": ["name"]}
    )
    assert config.presence is True
    assert config.presence_key == "userId"
    assert config.presence_meta == ("name",)


def test_the_dict_form_takes_the_snake_case_spelling_too() -> None:
    config = normalize_stream_config({**STREAM, "presence": True, "presence_key": "userId"})
    assert config.presence_key == "userId"


def test_a_misspelled_presence_key_names_the_closest_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'presenceKey'"):
        normalize_stream_config({**STREAM, "presence": True, "presenceKy": "userId"})


def test_a_callable_presence_key_and_meta_are_accepted() -> None:
    config = StreamConfig(
        name="chat",
        schema={"type": "object"},
        presence=True,
        presence_key=lambda ctx: ctx["sub"],
        presence_meta=lambda ctx: {"name": ctx["name"]},
    )
    assert callable(config.presence_key) and callable(config.presence_meta)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"presence_key": "userId"}, "need presence=True"),
        ({"presence_meta": ["name"]}, "need presence=True"),
        ({"presence": "yes"}, "must be True or False"),
        ({"presence": True, "presence_key": ""}, "auth-context key or a callable"),
        ({"presence": True, "presence_key": 3}, "auth-context key or a callable"),
        ({"presence": True, "presence_meta": "name"}, "list of auth-context keys"),
        ({"presence": True, "presence_meta": ["name", 1]}, "list of auth-context keys"),
    ],
)
def test_bad_presence_options_are_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StreamConfig(name="chat", schema={"type": "object"}, **options)  # type: ignore[arg-type]
