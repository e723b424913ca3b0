"""GET /chat/:projectId/online: who is in a project's chat right now (presence)."""

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

config = ApiRouteConfig(name="ChatOnline", method="GET", path="/chat/:projectId/online")


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """The members subscribed to the chat, on every instance: ``[{"id", "meta": {"plan"}}]``."""
    members = await ctx.streams.chatMessage.presence(req.path_params["projectId"])
    return ApiResponse(status=200, body=members)
