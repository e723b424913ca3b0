"""POST /todo: create a todo in the `inbox` group; subscribers of `inbox` see it at once."""

import secrets
import time
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from steps.todo_stream import Todo
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class CreateTodo(BaseModel):
    """The request body."""

    description: str = Field(min_length=1, pattern=r"\S")


config = ApiRouteConfig(
    name="CreateTodo",
    method="POST",
    path="/todo",
    body_schema=CreateTodo,
    response_schema={200: Todo},
)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Store the new todo; the stream pushes it to every subscriber of `inbox`."""
    body: CreateTodo = req.body
    todo_id = f"todo-{time.time_ns() // 1_000_000}-{secrets.token_hex(4)}"
    todo = Todo(id=todo_id, description=body.description, createdAt=datetime.now(UTC).isoformat())
    stored = await ctx.streams.todo.set("inbox", todo_id, todo)
    ctx.logger.info("todo created", {"todoId": todo_id})
    return ApiResponse(status=200, body=stored)
