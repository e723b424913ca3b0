"""The `todo` stream: every client subscribed to a group sees its todos change live."""

from pydantic import BaseModel

from surge import StreamConfig


class Todo(BaseModel):
    """A todo item, as stored and as sent to clients."""

    id: str
    description: str
    createdAt: str
    completedAt: str | None = None


config = StreamConfig(name="todo", schema=Todo)
