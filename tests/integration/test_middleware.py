"""Middleware in Motia's form, `async def mw(req, ctx, next)`: Config's around every API step,
then the step's own, in order; one may answer instead of the handler, or change the response."""

from __future__ import annotations

from typing import Any

import pytest

import surge
from surge import ApiResponse, ApiRouteConfig, Config, StreamConfig
from surge.errors import ConfigError
from surge.steps.config import normalize_api_config
from surge.testing import TestClient

STREAMS = [StreamConfig(name="todo", schema={"type": "object", "properties": {}})]


def test_global_then_step_middleware_wrap_the_handler_in_order() -> None:
    calls: list[str] = []

    async def timing(req: Any, ctx: Any, next: Any) -> Any:
        calls.append("global in")
        response = await next()
        calls.append("global out")
        response.headers = {**response.headers, "x-timed": "yes"}
        return response

    async def require_token(req: Any, ctx: Any, next: Any) -> Any:
        if req.headers.get("authorization") != "Bearer ok":
            return ApiResponse(401, {"error": "unauthorized"})
        calls.append("auth ok")
        return await next()

    async def handler(req: Any, ctx: Any) -> ApiResponse:
        calls.append("handler")
        return ApiResponse(200, {"secret": 42})

    step = ApiRouteConfig(name="Secret", method="GET", path="/secret", middleware=[require_token])
    app = surge.create_app(
        streams=STREAMS, config=Config(middleware=[timing]), steps=[(step, handler)]
    )
    with TestClient(app) as client:
        refused = client.get("/secret")
        assert (refused.status_code, refused.headers["x-timed"]) == (401, "yes")
        assert calls == ["global in", "global out"]
        calls.clear()
        allowed = client.get("/secret", headers={"authorization": "Bearer ok"})
        assert allowed.json() == {"secret": 42}
        assert calls == ["global in", "auth ok", "handler", "global out"]


def test_motias_dict_form_takes_a_middleware_list() -> None:
    async def mw(req: Any, ctx: Any, next: Any) -> Any:
        return await next()

    config = normalize_api_config(
        {"type": "api", "name": "A", "method": "GET", "path": "/a", "middleware": [mw]}
    )
    assert config.middleware == (mw,)


def test_a_middleware_that_is_not_async_or_takes_other_arguments_is_a_config_error() -> None:
    def not_async(req: Any, ctx: Any, next: Any) -> Any:
        return None

    async def two_args(req: Any, ctx: Any) -> Any:
        return None

    with pytest.raises(ConfigError, match=r"middleware\[0\] not_async must be an async function"):
        ApiRouteConfig(name="A", method="GET", path="/a", middleware=[not_async])
    with pytest.raises(ConfigError, match=r"middleware\[0\] two_args must take \(req, ctx, next\)"):
        ApiRouteConfig(name="A", method="GET", path="/a", middleware=[two_args])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"Config\.middleware"):
        surge.create_app(streams=STREAMS, config=Config(middleware=[not_async]))
