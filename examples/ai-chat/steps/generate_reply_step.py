"""Event step: stream the assistant's reply into ONE stream item, word by word.

Idempotent under redelivery (delivery is at least once): the reply's id is derived from the
user message's id, so a message delivered again after a crash regenerates the same item from
scratch (``attempt`` + 1) and completes it; a reply already ``done`` is left alone.
"""

from datetime import UTC, datetime

from steps.chat_model import ChatTurn, model_from_env
from steps.message_stream import Message
from steps.send_message_step import MessageCreated
from surge import EventConfig, FlowContext

HISTORY_TURNS = 20  # of the conversation sent to a real model as context
ERROR_CHARS = 300

config = EventConfig(
    name="GenerateReply",
    subscribes=["chat.message.created"],
    input=MessageCreated,
    flows=["ai-chat"],
    # A reply takes seconds; the lease is renewed while it runs.
    visibility_timeout=30.0,
    timeout=300.0,
)


def reply_id_for(message_id: str) -> str:
    """The id of the reply to ``message_id``: it sorts right after the message itself."""
    return f"{message_id}-reply"


async def history(ctx: FlowContext, conversation: str, message_id: str) -> list[ChatTurn]:
    """The conversation up to the user's message: what a real model gets as context."""
    items: list[Message] = await ctx.streams.message.get_group(conversation)
    turns: list[ChatTurn] = []
    for item in sorted(items, key=lambda m: m.id):
        if item.id > message_id:
            break
        if item.role == "user" or item.status == "done":
            turns.append({"role": item.role, "content": item.content})
    return turns[-HISTORY_TURNS:]


async def handler(input: MessageCreated, ctx: FlowContext) -> None:
    """Write the reply: ``streaming`` with growing ``content``, then ``done``."""
    messages = ctx.streams.message
    conversation, reply_id = input.conversationId, reply_id_for(input.messageId)
    existing: Message | None = await messages.get(conversation, reply_id)
    if existing is not None and existing.status == "done":
        ctx.logger.info("reply already complete, nothing to do", {"replyId": reply_id})
        return
    reply = Message(
        id=reply_id,
        role="assistant",
        content="",
        status="streaming",
        createdAt=existing.createdAt if existing else datetime.now(UTC).isoformat(),
        replyTo=input.messageId,
        attempt=existing.attempt + 1 if existing else 1,
    )
    if existing is not None:
        ctx.logger.info("regenerating an unfinished reply", {"replyId": reply_id})
    await messages.set(conversation, reply_id, reply)
    typing = {"groupId": conversation}
    await messages.send(typing, {"type": "typing", "data": {"replyId": reply_id, "isTyping": True}})
    try:
        model = model_from_env()
        turns = await history(ctx, conversation, input.messageId)
        async for piece in model.stream(turns):
            # One atomic append per word: no read-modify-write, so nothing is lost even if
            # another writer touches the item. The page (@surge/stream-client) gets each word as
            # a delta (a patch frame of the word), Motia's clients the whole item.
            result = await messages.update(
                conversation, reply_id, [{"type": "append", "path": "content", "value": piece}]
            )
            reply = result.new_value
        done: list[dict[str, object]] = [{"type": "set", "path": "status", "value": "done"}]
        if reply.content.strip() != reply.content:
            done.append({"type": "set", "path": "content", "value": reply.content.strip()})
        reply = (await messages.update(conversation, reply_id, done)).new_value
    except Exception as exc:
        # Shown in the page; the runner retries (regenerating from scratch) with backoff.
        error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        await messages.update(
            conversation,
            reply_id,
            [
                {"type": "set", "path": "status", "value": "error"},
                {"type": "set", "path": "error", "value": error},
            ],
        )
        raise
    finally:
        await messages.send(
            typing, {"type": "typing", "data": {"replyId": reply_id, "isTyping": False}}
        )
    ctx.logger.info("reply complete", {"replyId": reply_id, "chars": len(reply.content)})
