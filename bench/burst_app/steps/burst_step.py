"""POST /burst {"n": N}: one handler awaiting N sequential `set`s of one item (a job's progress).

The realistic producer of the guide: each `set` is acknowledged (durably, on the file store)
before the next one starts, so nothing lets the changes of one request pile up in a loop tick.
"""

import secrets

from pydantic import BaseModel, Field

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Burst(BaseModel):
    """How many sequential sets."""

    n: int = Field(ge=1, le=10_000)


config = ApiRouteConfig(name="Burst", method="POST", path="/burst", body_schema=Burst, emits=[])

DESCRIPTION = "x" * 48


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Set one item of `inbox` N times, awaiting each."""
    body: Burst = req.body
    item_id = f"job-{secrets.token_hex(4)}"
    for step in range(body.n):
        await ctx.streams.todo.set(
            "inbox", item_id, {"id": item_id, "description": DESCRIPTION, "step": step}
        )
    return ApiResponse(status=200, body={"id": item_id, "sets": body.n})
