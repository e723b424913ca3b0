"""One AI answer per group: the assistant's message, its content appended token by token."""

from pydantic import BaseModel

from surge import StreamConfig


class Answer(BaseModel):
    id: str
    role: str = "assistant"
    content: str = ""
    status: str = "streaming"
    startNs: int = 0  # time.monotonic_ns() when token 0 was due (CLOCK_MONOTONIC is system-wide)


config = StreamConfig(name="answer", schema=Answer)
