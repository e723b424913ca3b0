"""GET /todo: the todos of `inbox`, in creation order."""

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

config = ApiRouteConfig(name="ListTodos", method="GET", path="/todo")


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Return every todo of the inbox."""
    return ApiResponse(status=200, body=await ctx.streams.todo.get_group("inbox"))
