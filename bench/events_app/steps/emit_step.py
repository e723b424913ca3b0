"""POST /emit: emit one ``bench.event`` (durable once emit returns) and answer 202."""

import time

from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Body(BaseModel):
    """The writer's body: a description carrying its send time."""

    description: str


config = ApiRouteConfig(
    name="BenchEmit", method="POST", path="/emit", body_schema=Body, emits=["bench.event"]
)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Emit; the event step does the rest."""
    data = {"description": req.body.description, "emitted_ns": time.monotonic_ns()}
    await ctx.emit({"topic": "bench.event", "data": data})
    return ApiResponse(status=202, body={"ok": True})
