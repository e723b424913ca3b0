"""The `todo` stream the bench's lean subscribers join (group `inbox`)."""

from pydantic import BaseModel

from surge import StreamConfig


class Progress(BaseModel):
    """A small item: a job's progress."""

    id: str
    description: str
    step: int


config = StreamConfig(name="todo", schema=Progress, base_config={"storageType": "default"})
