"""The `announcement` stream: public (no can_access), so anonymous clients may subscribe too."""

from pydantic import BaseModel

from surge import StreamConfig


class Announcement(BaseModel):
    """A public announcement."""

    id: str
    text: str


config = StreamConfig(name="announcement", schema=Announcement)
