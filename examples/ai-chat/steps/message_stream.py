"""The `message` stream: one group per conversation, one item per message.

The assistant's reply is ONE item that grows: created with ``status: "streaming"`` and empty
``content``, rewritten with each new word, then ``status: "done"`` (or ``"error"``, retried).
"""

from typing import Literal

from pydantic import BaseModel

from surge import StreamConfig


class Message(BaseModel):
    """A message of a conversation, as stored and as sent to clients."""

    id: str
    role: Literal["user", "assistant"]
    content: str
    status: Literal["streaming", "done", "error"] = "done"
    createdAt: str
    replyTo: str | None = None
    """The user message an assistant reply answers."""
    attempt: int = 1
    """1 for a reply's first generation; more when it was regenerated (after a crash, a retry)."""
    error: str | None = None


config = StreamConfig(name="message", schema=Message, base_config={"storageType": "default"})
