"""POST /todo: create a todo in the `inbox` group; subscribers of `inbox` see it at once."""

import secrets
import time
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from steps.todo_stream import Todo
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class CreateTodo(BaseModel):
    """The request body."""

    # Not blank: the schema says so, so the OpenAPI document and the 400 agree.
    description: str = Field(min_length=1, pattern=r"\S")
    dueDate: str | None = None


class Error(BaseModel):
    """An error body."""

    error: str


config = ApiRouteConfig(
    name="CreateTodo",
    method="POST",
    path="/todo",
    body_schema=CreateTodo,
    response_schema={200: Todo, 400: Error},
    emits=[],
)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Store the new todo; the stream pushes it to every subscriber of `inbox`."""
    body: CreateTodo = req.body
    ctx.logger.info("Creating new todo", {"body": body.model_dump()})
    if not body.description.strip():
        return ApiResponse(status=400, body={"error": "Description is required"})
    todo_id = f"todo-{time.time_ns() // 1_000_000}-{secrets.token_hex(4)}"
    todo = await ctx.streams.todo.set(
        "inbox",
        todo_id,
        Todo(
            id=todo_id,
            description=body.description,
            createdAt=datetime.now(UTC).isoformat(),
            dueDate=body.dueDate,
        ),
    )
    ctx.logger.info("Todo created successfully", {"todoId": todo_id})
    return ApiResponse(status=200, body=todo)
