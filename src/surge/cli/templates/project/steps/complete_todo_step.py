"""PUT /todo/:id: mark a todo complete (or not, with {"completed": false})."""

from datetime import UTC, datetime

from pydantic import BaseModel

from steps.todo_stream import Todo
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class UpdateTodo(BaseModel):
    """The request body; an empty body marks the todo complete."""

    completed: bool = True


class NotFound(BaseModel):
    """The 404 body."""

    error: str


config = ApiRouteConfig(
    name="CompleteTodo",
    method="PUT",
    path="/todo/:id",
    body_schema=UpdateTodo,
    response_schema={200: Todo, 404: NotFound},
)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Update the todo; subscribers get an `update` event."""
    todo_id = req.path_params["id"]
    todo: Todo | None = await ctx.streams.todo.get("inbox", todo_id)
    if todo is None:
        return ApiResponse(status=404, body={"error": f"todo {todo_id} not found"})
    completed_at = datetime.now(UTC).isoformat() if req.body.completed else None
    updated = await ctx.streams.todo.set(
        "inbox", todo_id, todo.model_copy(update={"completedAt": completed_at})
    )
    return ApiResponse(status=200, body=updated)
