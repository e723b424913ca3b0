"""POST /chat/:projectId/typing: an ephemeral typing indicator for a project's chat."""

from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Typing(BaseModel):
    """Who is typing."""

    userId: str
    isTyping: bool = True


config = ApiRouteConfig(
    name="ChatTyping", method="POST", path="/chat/:projectId/typing", body_schema=Typing
)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Send `typing` to the project's chat subscribers; nothing is stored."""
    await ctx.streams.chatMessage.send(
        {"groupId": req.path_params["projectId"]},
        {"type": "typing", "data": req.body.model_dump()},
    )
    return ApiResponse(status=202, body={"sent": True})
