"""Event and cron step configs: Motia's dict form, the typed form, and every bad input."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from surge.errors import ConfigError
from surge.steps.config import (
    CronConfig,
    EventConfig,
    StreamConfig,
    normalize_api_config,
    normalize_cron_config,
    normalize_event_config,
    normalize_stream_config,
)
from surge.steps.discovery import discover


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_motia_event_dict_maps_infrastructure_to_typed_fields() -> None:
    config = normalize_event_config(
        {
            "type": "event",
            "name": "RunJob",
            "subscribes": ["job.requested"],
            "emits": ["job.finished", {"topic": "job.failed", "label": "on error"}],
            "input": {"type": "object", "properties": {"id": {"type": "string"}}},
            "flows": ["jobs"],
            "infrastructure": {
                "queue": {"type": "fifo", "maxRetries": 5, "visibilityTimeout": 12},
                "handler": {"timeout": 7},
            },
        }
    )
    assert config.subscribes == ("job.requested",)
    assert config.emits == ("job.finished", "job.failed")
    assert (config.max_retries, config.fifo, config.visibility_timeout) == (5, True, 12)
    assert config.timeout == 7
    assert config.concurrency == 10
    assert config.input_schema is not None
    assert config.input_schema.validate_json({"id": "j"}) == {"id": "j"}


def test_event_defaults_three_retries_standard_queue_and_no_input_schema() -> None:
    config = normalize_event_config({"type": "event", "name": "E", "subscribes": ["t"]})
    assert (config.max_retries, config.fifo, config.input_schema) == (3, False, None)


def test_typed_event_config_takes_a_pydantic_input_model() -> None:
    class Job(BaseModel):
        id: str

    config = EventConfig(name="E", subscribes=["t"], input=Job, concurrency=2)
    assert config.input_schema is not None and config.input_schema.model is Job


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "E", "subscribes": "t"}, "subscribes must be a list of topic strings"),
        ({"name": "E", "subscribes": []}, "needs at least one topic in subscribes"),
        ({"name": "E", "subscribes": ["t"], "emits": [3]}, "emits entry 3 is not a topic string"),
        ({"name": "E", "subscribes": ["t"], "concurrency": 0}, "concurrency must be a positive"),
        (
            {"name": "E", "subscribes": ["t"], "infrastructure": {"queue": {"maxRetries": -1}}},
            "maxRetries must be 0 or more",
        ),
        (
            {"name": "E", "subscribes": ["t"], "infrastructure": {"queue": {"type": "lifo"}}},
            "must be 'standard' or 'fifo'",
        ),
        ({"name": "", "subscribes": ["t"]}, "needs a non-empty name"),
        ({"name": "E", "subscribes": ["t"], "input": 5}, "input must be a pydantic model"),
    ],
)
def test_bad_event_configs_say_what_is_wrong(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        normalize_event_config({"type": "event", **raw})


def test_api_emits_entries_must_be_topic_strings() -> None:
    with pytest.raises(ConfigError, match="emits entry None is not a topic string"):
        normalize_api_config({"name": "A", "method": "POST", "path": "/a", "emits": [None]})


@pytest.mark.parametrize(
    "expression", ["*/5 * * * *", "0 9 * * 1-5", "* * * * * *", "*/10 * * * * *"]
)
def test_cron_accepts_five_fields_and_node_cron_seconds_first(expression: str) -> None:
    config = normalize_cron_config({"type": "cron", "name": "C", "cron": expression})
    assert config.has_seconds == (len(expression.split()) == 6)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "does not parse"),
        ("* * * *", "has 4 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("every minute", "has 2 fields"),
        (None, "must be a string"),
    ],
)
def test_bad_cron_expressions_are_refused(expression: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CronConfig(name="C", cron=expression)  # type: ignore[arg-type]


EVENT = """
config = {
    "type": "event",
    "name": "RunJob",
    "subscribes": ["job.requested"],
    "emits": ["job.finished"],
}

async def handler(input, ctx):
    return None
"""

API = """
config = {"type": "api", "name": "Start", "method": "POST", "path": "/start",
          "emits": ["job.requested"]}

async def handler(req, ctx):
    return {"status": 202, "body": {}}
"""

CRON = """
config = {"type": "cron", "name": "Tick", "cron": "*/5 * * * *", "emits": ["job.requested"]}

async def handler(ctx):
    return None
"""


def test_discovers_event_and_cron_steps_and_indexes_subscribers(tmp_path: Path) -> None:
    write(tmp_path, "steps/run_job_step.py", EVENT)
    write(tmp_path, "steps/start_step.py", API)
    write(tmp_path, "steps/tick.step.py", CRON)
    registry = discover(tmp_path)
    assert [s.name for s in registry.events] == ["RunJob"]
    assert [s.name for s in registry.crons] == ["Tick"]
    assert [s.name for s in registry.subscribers["job.requested"]] == ["RunJob"]
    assert registry.event_step("RunJob") is registry.events[0]


def test_bad_cron_in_a_step_file_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "steps/tick_step.py",
        """
        config = {
            "type": "cron",
            "name": "Tick",
            "cron": "99 * * * *",
        }

        async def handler(ctx):
            return None
        """,
    )
    with pytest.raises(ConfigError, match=r"line 4: step 'Tick': cron '99 \* \* \* \*'") as info:
        discover(tmp_path)
    assert info.value.path == path


def test_emits_entry_not_a_string_names_the_line_of_emits(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/run_step.py",
        """
        config = {
            "type": "event",
            "name": "Run",
            "subscribes": ["a"],
            "emits": [42],
        }

        async def handler(input, ctx):
            return None
        """,
    )
    with pytest.raises(ConfigError, match=r"run_step.py: line 5: step 'Run': emits entry 42"):
        discover(tmp_path)


def test_typed_config_errors_point_at_the_keyword_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/tick_step.py",
        """
        from surge import CronConfig

        config = CronConfig(
            name="Tick",
            cron="not a cron",
        )

        async def handler(ctx):
            return None
        """,
    )
    with pytest.raises(ConfigError, match=r"line 5: step 'Tick': cron 'not a cron' has 3 fields"):
        discover(tmp_path)


@pytest.mark.parametrize(
    ("kind", "config", "handler", "message"),
    [
        (
            "event",
            EVENT.split("async def")[0],
            "async def handler(input):\n    pass\n",
            r"line \d+: event step 'RunJob': `handler` must take 2 argument\(s\): async def handler\(input, ctx\)",
        ),
        (
            "event",
            EVENT.split("async def")[0],
            "def handler(input, ctx):\n    pass\n",
            "event step 'RunJob': `handler` must be `async def`",
        ),
        (
            "cron",
            CRON.split("async def")[0],
            "async def handler(input, ctx):\n    pass\n",
            r"cron step 'Tick': `handler` must take 1 argument\(s\): async def handler\(ctx\)",
        ),
        ("cron", CRON.split("async def")[0], "", "cron step 'Tick' has no `handler` function"),
    ],
)
def test_handler_with_the_wrong_signature_is_refused(
    tmp_path: Path, kind: str, config: str, handler: str, message: str
) -> None:
    path = write(tmp_path, f"steps/{kind}_step.py", config + "\n" + handler)
    with pytest.raises(ConfigError, match=message) as info:
        discover(tmp_path)
    assert info.value.path == path


def test_handler_with_defaults_or_varargs_is_accepted(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/run_job_step.py",
        EVENT.split("async def")[0] + "\nasync def handler(*args, extra=None):\n    pass\n",
    )
    assert len(discover(tmp_path).events) == 1


def test_topic_nobody_emits_is_a_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, "steps/run_job_step.py", EVENT)
    with caplog.at_level(logging.WARNING, logger="surge.steps.registry"):
        registry = discover(tmp_path)
    assert len(registry.events) == 1
    assert "subscribes to topic 'job.requested', which no step emits" in caplog.text
    assert "run_job_step.py" in caplog.text


def test_step_names_are_unique_across_api_event_and_cron_steps(tmp_path: Path) -> None:
    write(tmp_path, "steps/run_job_step.py", EVENT)
    write(tmp_path, "steps/other_step.py", CRON.replace('"Tick"', '"RunJob"'))
    with pytest.raises(ConfigError, match="step name 'RunJob' is used twice"):
        discover(tmp_path)


class _Item(BaseModel):
    id: str


def test_slow_consumer_policy_in_typed_and_dict_stream_configs() -> None:
    assert StreamConfig(name="s", schema=_Item, slow_consumer="latest").slow_consumer == "latest"
    raw = {"name": "s", "schema": _Item, "slowConsumer": "latest"}
    assert normalize_stream_config(raw).slow_consumer == "latest"
    with pytest.raises(ConfigError, match="slow_consumer must be one of 'resync', 'latest'"):
        StreamConfig(name="s", schema=_Item, slow_consumer="lastest")  # type: ignore[arg-type]
