"""Responses are checked against the step's ``response_schema`` for their status (issue 12 item 4).

A mismatch is the server's bug: the client gets a 500 with a generic body and the trace id; the
log gets one ERROR line naming the step, the status and the field. A handler that returns nothing
is the same kind of bug (it used to be a silent 204).
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from surge.testing import TestClient

pytestmark = pytest.mark.timeout(60)

STEPS = {
    "steps/count_step.py": """
        from pydantic import BaseModel
        from surge import ApiResponse, ApiRouteConfig

        class Count(BaseModel):
            n: int

        config = ApiRouteConfig(
            name="Count",
            method="GET",
            path="/count/:what",
            response_schema={200: Count, 404: {"type": "object", "required": ["error"]}},
        )

        async def handler(req, ctx):
            what = req.path_params["what"]
            if what == "good":
                return ApiResponse(200, {"n": 3})
            if what == "model":
                return ApiResponse(200, Count(n=4))
            if what == "missing":
                return ApiResponse(404, {"error": "no such count"})
            if what == "missing-bad":
                return ApiResponse(404, {"message": "no such count"})
            if what == "teapot":  # no schema for 418: not checked
                return ApiResponse(418, {"anything": True})
            return ApiResponse(200, {"n": "x"})
    """,
    "steps/motia_step.py": """
        config = {
            "type": "api",
            "name": "MotiaList",
            "method": "GET",
            "path": "/motia/:ok",
            "responseSchema": {"200": {"type": "array", "items": {"type": "string"}}},
        }

        async def handler(req, context):
            if req["pathParams"]["ok"] == "yes":
                return {"status": 200, "body": ["a", "b"]}
            return {"status": 200, "body": ["a", 2]}
    """,
    "steps/silent_step.py": """
        from surge import ApiRouteConfig

        config = ApiRouteConfig(name="Silent", method="POST", path="/silent")

        async def handler(req, ctx):
            ctx.logger.info("saved")  # does its work, forgets to return
    """,
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for rel, text in STEPS.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return tmp_path


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_body_that_breaks_its_schema_is_a_500_with_one_error_line_naming_step_status_field(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(project) as client:
        caplog.clear()
        response = client.get("/count/bad")
    assert response.status_code == 500
    trace_id = response.headers["x-trace-id"]
    assert response.json() == {"error": "internal server error", "traceId": trace_id}
    lines = error_lines(caplog)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"step Count [trace {trace_id}]: response 200 does not match")
    assert "field n: Input should be a valid integer" in lines[0]
    assert not any(r.exc_info for r in caplog.records)  # one line, no traceback


def test_bodies_that_match_pass_unchanged_models_included(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(project) as client:
        assert client.get("/count/good").json() == {"n": 3}
        assert client.get("/count/model").json() == {"n": 4}
        missing = client.get("/count/missing")
        assert (missing.status_code, missing.json()) == (404, {"error": "no such count"})
        teapot = client.get("/count/teapot")
        assert (teapot.status_code, teapot.json()) == (418, {"anything": True})
        assert client.get("/motia/yes").json() == ["a", "b"]
    assert error_lines(caplog) == []


def test_a_json_schema_response_is_checked_for_its_status_too(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(project) as client:
        caplog.clear()
        assert client.get("/count/missing-bad").status_code == 500
        assert client.get("/motia/no").status_code == 500
    first, second = error_lines(caplog)
    assert "step Count" in first and "response 404 does not match" in first
    assert "'error' is a required property" in first
    assert "step MotiaList" in second and "response 200 does not match" in second
    assert "field 1: 2 is not of type 'string'" in second


def test_a_handler_that_returns_nothing_is_a_500_saying_what_to_return(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(project) as client:
        caplog.clear()
        response = client.post("/silent", json={})
    assert response.status_code == 500
    assert response.json()["error"] == "internal server error"
    lines = error_lines(caplog)
    assert len(lines) == 1, lines
    assert lines[0].endswith("handler returned nothing; return ApiResponse(status, body)")
    assert "step Silent" in lines[0]
