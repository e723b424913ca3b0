"""JsonFormatter: one JSON object per record with the context's trace, step and connection, and
the same redaction as plain lines (message and traceback)."""

from __future__ import annotations

import logging

import orjson

from surge.log_context import CONNECTION_ID, log_context
from surge.server.logs import JsonFormatter, register_sensitive_param

TOKEN = "s3cr3t-token-never-logged"


def record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("surge.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_a_line_has_the_fields_and_the_context() -> None:
    with log_context(trace_id="t" * 32, step="CreateTodo"):
        token = CONNECTION_ID.set(7)
        try:
            line = JsonFormatter().format(record("hello %s", "world"))
        finally:
            CONNECTION_ID.reset(token)
    entry = orjson.loads(line)
    assert entry.pop("time").endswith("Z")
    assert entry == {
        "level": "WARNING",
        "logger": "surge.test",
        "message": "hello world",
        "trace_id": "t" * 32,
        "step": "CreateTodo",
        "connection_id": 7,
    }
    assert "\n" not in line


def test_outside_any_work_there_is_no_trace_step_or_connection() -> None:
    entry = orjson.loads(JsonFormatter().format(record("idle")))
    assert set(entry) == {"time", "level", "logger", "message"}


def test_tokens_are_redacted_from_the_message_and_the_traceback() -> None:
    register_sensitive_param("__test_key")
    try:
        raise RuntimeError(f"GET /?authToken={TOKEN}&__test_key=k3y-v4lue failed")
    except RuntimeError as exc:
        caught = exc
    line = JsonFormatter().format(record("upgrade %s", f"/?authToken={TOKEN}", exc=caught))
    entry = orjson.loads(line)
    assert TOKEN not in line
    assert "k3y-v4lue" not in line
    assert entry["message"] == "upgrade /?authToken=[redacted]"
    assert "RuntimeError" in entry["exception"]
    assert "authToken=[redacted]" in entry["exception"]


def test_values_that_are_not_json_are_written_as_text() -> None:
    line = JsonFormatter().format(record("%s", {1, 2}))
    assert orjson.loads(line)["message"] in ("{1, 2}", "{2, 1}")
