"""GET /online/:group: the presence list (or [] when presence is off), for the benchmark."""

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

config = ApiRouteConfig(name="Online", method="GET", path="/online/:group")


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """The group's members."""
    if not ctx.streams.room.config.presence:
        return ApiResponse(status=200, body=[])
    return ApiResponse(status=200, body=await ctx.streams.room.presence(req.path_params["group"]))
