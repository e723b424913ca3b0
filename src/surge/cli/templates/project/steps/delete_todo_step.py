"""DELETE /todo/:id: remove a todo; subscribers get a `delete` event."""

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

config = ApiRouteConfig(name="DeleteTodo", method="DELETE", path="/todo/:id")


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Delete the todo, or 404 when there is none."""
    deleted = await ctx.streams.todo.delete("inbox", req.path_params["id"])
    if deleted is None:
        return ApiResponse(status=404, body={"error": "todo not found"})
    return ApiResponse(status=200, body=deleted)
