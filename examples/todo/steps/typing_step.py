"""POST /todo/typing: an ephemeral "someone is typing" event; never stored."""

from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Typing(BaseModel):
    """Who is typing, and whether they still are."""

    userId: str
    isTyping: bool = True


config = ApiRouteConfig(name="Typing", method="POST", path="/todo/typing", body_schema=Typing)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Send `typing` to every subscriber of `inbox` (no id: the whole group)."""
    await ctx.streams.todo.send(
        {"groupId": "inbox"}, {"type": "typing", "data": req.body.model_dump()}
    )
    return ApiResponse(status=202, body={"sent": True})
