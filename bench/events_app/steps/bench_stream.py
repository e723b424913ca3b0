"""The stream the event handler writes: named ``todo`` so bench/lean.py's subscribers join it."""

from pydantic import BaseModel

from surge import StreamConfig


class Item(BaseModel):
    """One handled event (the description carries the writer's send time)."""

    id: str
    description: str


config = StreamConfig(name="todo", schema=Item, base_config={"storageType": "default"})
