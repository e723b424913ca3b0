"""Stream auth for the chat example.

Clients send the token as the subprotocol pair ``["Authorization", token]`` or as
``?authToken=token``. No token: anonymous (and ``can_access`` on chatMessage refuses anonymous
users). An unknown token: the WebSocket upgrade is refused with HTTP 401.
"""

from auth import AuthContext, authenticate
from surge import Config, StreamAuth

config = Config(stream_auth=StreamAuth(context_schema=AuthContext, authenticate=authenticate))
