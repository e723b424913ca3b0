"""POST /chat/:projectId: post a message to a project's chat."""

import secrets
from datetime import UTC, datetime

from pydantic import BaseModel

from steps.chat_message_stream import ChatMessage
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext


class PostMessage(BaseModel):
    """The request body."""

    userId: str
    message: str


config = ApiRouteConfig(
    name="PostMessage",
    method="POST",
    path="/chat/:projectId",
    body_schema=PostMessage,
    response_schema={200: ChatMessage},
)


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Store the message; project members subscribed to the chat see it at once."""
    message_id = f"msg-{secrets.token_hex(6)}"
    message = await ctx.streams.chatMessage.set(
        req.path_params["projectId"],
        message_id,
        ChatMessage(
            id=message_id,
            userId=req.body.userId,
            message=req.body.message,
            timestamp=datetime.now(UTC).isoformat(),
        ),
    )
    return ApiResponse(status=200, body=message)
