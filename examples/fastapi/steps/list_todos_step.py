from typing import Any

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

config = ApiRouteConfig(name="ListTodos", method="GET", path="/todo")


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    todos: list[Any] = await ctx.streams.todo.get_group("inbox")
    return ApiResponse(200, todos)
