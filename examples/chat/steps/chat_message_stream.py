"""The `chatMessage` stream: one group per project; only members may subscribe.

Presence is on: the server knows who has the chat open (one member per user, however many tabs)
and tells the chat's subscribers (`presence` events); `GET /chat/:projectId/online` lists them.
"""

from pydantic import BaseModel

from auth import AuthContext
from surge import StreamConfig, Subscription


class ChatMessage(BaseModel):
    """A chat message."""

    id: str
    userId: str
    message: str
    timestamp: str


def can_access(subscription: Subscription, auth_context: AuthContext | None) -> bool:
    """Only users that are part of the project backing this chat (the group) may join."""
    if auth_context is None:
        return False
    return subscription.groupId in auth_context.projectIds


config = StreamConfig(
    name="chatMessage",
    schema=ChatMessage,
    base_config={"storageType": "default"},
    can_access=can_access,
    presence=True,
    presence_key="userId",  # a user with three tabs open is online once
    presence_meta=["plan"],  # copied from the auth context into the member list
)
