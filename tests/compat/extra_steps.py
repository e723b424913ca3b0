"""Source of the extra steps and configs the compatibility tests add to their copy of the todo
example (written into ``steps/`` or ``surge.config.py`` of a project in tmp_path)."""

__all__ = [
    "ANY_GROUP_STEP",
    "AUTH_CONFIG",
    "BURST_STEP",
    "DOUBLE_UPDATE_STEP",
    "PRIVATE_STREAM",
    "REACT_STEP",
    "SMALL_LATEST_OUTBOX_CONFIG",
    "SMALL_OUTBOX_CONFIG",
    "SPAM_STEP",
]

REACT_STEP = '''
"""POST /todo/:id/react: an ephemeral `reaction` event on the item's channel."""

from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Reaction(BaseModel):
    emoji: str


config = ApiRouteConfig(
    name="React", method="POST", path="/todo/:id/react", body_schema=Reaction
)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    todo_id = req.path_params["id"]
    await ctx.streams.todo.send(
        {"groupId": "inbox", "id": todo_id},
        {"type": "reaction", "data": {"id": todo_id, "emoji": req.body.emoji}},
    )
    return ApiResponse(status=202, body={"sent": True})
'''

DOUBLE_UPDATE_STEP = '''
"""POST /todo/:id/double: two `set`s of one item back to back (or queued together)."""

import asyncio

from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Double(BaseModel):
    first: str
    second: str
    together: bool = False


config = ApiRouteConfig(
    name="DoubleUpdate", method="POST", path="/todo/:id/double", body_schema=Double
)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    todo_id = req.path_params["id"]
    todo = await ctx.streams.todo.get("inbox", todo_id)
    if todo is None:
        return ApiResponse(status=404, body={"error": "not found"})
    first = todo.model_copy(update={"description": req.body.first})
    second = todo.model_copy(update={"description": req.body.second})
    if req.body.together:
        # Both writes are queued before either commits: one transaction, fanned out in one
        # loop callback, i.e. within the same millisecond.
        await asyncio.gather(
            ctx.streams.todo.set("inbox", todo_id, first),
            ctx.streams.todo.set("inbox", todo_id, second),
        )
    else:
        await ctx.streams.todo.set("inbox", todo_id, first)
        await ctx.streams.todo.set("inbox", todo_id, second)
    return ApiResponse(status=200, body=await ctx.streams.todo.get("inbox", todo_id))
'''

ANY_GROUP_STEP = '''
"""POST /groups/:group/todos/:id {action: set|delete|send}: writes to any group of `todo`."""

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from steps.todo_stream import Todo
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Action(BaseModel):
    action: Literal["set", "delete", "send"]
    description: str = ""


config = ApiRouteConfig(
    name="AnyGroup", method="POST", path="/groups/:group/todos/:id", body_schema=Action
)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    group, todo_id = req.path_params["group"], req.path_params["id"]
    if req.body.action == "set":
        todo = Todo(
            id=todo_id,
            description=req.body.description,
            createdAt=datetime.now(UTC).isoformat(),
        )
        return ApiResponse(status=200, body=await ctx.streams.todo.set(group, todo_id, todo))
    if req.body.action == "delete":
        return ApiResponse(status=200, body=await ctx.streams.todo.delete(group, todo_id))
    await ctx.streams.todo.send(
        {"groupId": group, "id": todo_id}, {"type": "reaction", "data": {"group": group}}
    )
    return ApiResponse(status=202, body={"sent": True})
'''

BURST_STEP = '''
"""POST /burst {group, count}: `count` creates queued at once (committed in a few batches)."""

import asyncio
from datetime import UTC, datetime

from pydantic import BaseModel

from steps.todo_stream import Todo
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Burst(BaseModel):
    group: str
    count: int


config = ApiRouteConfig(name="Burst", method="POST", path="/burst", body_schema=Burst)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    now = datetime.now(UTC).isoformat()
    await asyncio.gather(
        *(
            ctx.streams.todo.set(
                req.body.group, f"b{i}", Todo(id=f"b{i}", description="burst", createdAt=now)
            )
            for i in range(req.body.count)
        )
    )
    return ApiResponse(status=200, body={"count": req.body.count})
'''


SPAM_STEP = '''
"""POST /todo/:id/spam {count, size}: `count` updates of one item queued at once; the last
one has the description "final"."""

import asyncio

from pydantic import BaseModel

from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class Spam(BaseModel):
    count: int
    size: int


config = ApiRouteConfig(name="Spam", method="POST", path="/todo/:id/spam", body_schema=Spam)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    todo_id = req.path_params["id"]
    todo = await ctx.streams.todo.get("inbox", todo_id)
    padding = "x" * req.body.size
    descriptions = [f"{i}:{padding}" for i in range(req.body.count - 1)] + ["final"]
    await asyncio.gather(
        *(
            ctx.streams.todo.set("inbox", todo_id, todo.model_copy(update={"description": d}))
            for d in descriptions
        )
    )
    return ApiResponse(status=200, body=await ctx.streams.todo.get("inbox", todo_id))
'''

SMALL_OUTBOX_CONFIG = """
from surge import Config, Limits

config = Config(limits=Limits(outbox_capacity=64))
"""

SMALL_LATEST_OUTBOX_CONFIG = """
from surge import Config, Limits

config = Config(limits=Limits(outbox_capacity=64, slow_consumer="latest"))
"""


AUTH_CONFIG = """
from surge import AuthRequest, Config, StreamAuth, extract_auth_token


def authenticate(request: AuthRequest) -> dict[str, str] | None:
    token = extract_auth_token(request)
    return None if token is None else {"user": token}


config = Config(stream_auth=StreamAuth(authenticate=authenticate))
"""

PRIVATE_STREAM = '''
"""`private`: each user may join only the group named after them."""

from typing import Any

from pydantic import BaseModel

from surge import StreamConfig, Subscription


class Note(BaseModel):
    id: str
    text: str


def can_access(subscription: Subscription, context: Any) -> bool:
    return context is not None and context["user"] == subscription.groupId


config = StreamConfig(name="private", schema=Note, can_access=can_access)
'''
