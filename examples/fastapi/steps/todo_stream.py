from pydantic import BaseModel

from surge import StreamConfig


class Todo(BaseModel):
    id: str
    description: str
    done: bool = False


config = StreamConfig(name="todo", schema=Todo, base_config={"storageType": "default"})
