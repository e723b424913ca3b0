"""POST /chat/:conversation: store the user's message, ask for a reply, answer 202 at once."""

import secrets
import time
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from steps.message_stream import Message
from surge import ApiRequest, ApiResponse, ApiRouteConfig, FlowContext

MAX_TEXT_CHARS = 4000


class SendMessage(BaseModel):
    """The request body."""

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class Error(BaseModel):
    """An error body."""

    error: str


class MessageCreated(BaseModel):
    """The data of `chat.message.created` (the reply step's input)."""

    conversationId: str
    messageId: str
    text: str


config = ApiRouteConfig(
    name="SendMessage",
    method="POST",
    path="/chat/:conversation",
    body_schema=SendMessage,
    response_schema={202: Message, 400: Error},
    emits=["chat.message.created"],
    flows=["ai-chat"],
)


def new_message_id() -> str:
    """A fresh id that sorts by creation time (fixed-width milliseconds, then randomness)."""
    return f"m-{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(4)}"


async def handler(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
    """Store the message (subscribers see it at once), emit, and return it with 202."""
    body: SendMessage = req.body
    text = body.text.strip()
    if not text:
        return ApiResponse(status=400, body={"error": "text must not be blank"})
    conversation = req.path_params["conversation"]
    message_id = new_message_id()
    # An invalid conversation id fails here (a 400 naming groupId), before anything is emitted.
    message = await ctx.streams.message.set(
        conversation,
        message_id,
        Message(
            id=message_id,
            role="user",
            content=text,
            createdAt=datetime.now(UTC).isoformat(),
        ),
    )
    created = MessageCreated(conversationId=conversation, messageId=message_id, text=text)
    # Durable once emit returns: the reply is written even if the process dies right after.
    await ctx.emit({"topic": "chat.message.created", "data": created})
    ctx.logger.info("message stored", {"conversation": conversation, "messageId": message_id})
    return ApiResponse(status=202, body=message)
