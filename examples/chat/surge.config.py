"""Stream auth for the chat example: a token names a user and the projects they belong to.

Clients send the token as the subprotocol pair ``["Authorization", token]`` or as
``?authToken=token``. No token: anonymous (and ``can_access`` on chatMessage refuses anonymous
users). An unknown token: the WebSocket upgrade is refused with HTTP 401.
"""

from pydantic import BaseModel

from surge import AuthRequest, Config, StreamAuth, extract_auth_token


class AuthContext(BaseModel):
    """What a connection carries once authenticated."""

    userId: str
    plan: str
    projectIds: list[str]


# Stand-in for a real session store (a database, a JWT check, an auth service).
SESSIONS: dict[str, AuthContext] = {
    "alice-token": AuthContext(userId="alice", plan="pro", projectIds=["project-a", "project-b"]),
    "bob-token": AuthContext(userId="bob", plan="free", projectIds=["project-b"]),
}


async def authenticate(request: AuthRequest) -> AuthContext | None:
    """Return the session for the token; None for anonymous; raise to refuse the upgrade."""
    token = extract_auth_token(request)
    if token is None:
        return None
    session = SESSIONS.get(token)
    if session is None:
        raise PermissionError(f"Invalid token: {token}")
    return session


config = Config(stream_auth=StreamAuth(context_schema=AuthContext, authenticate=authenticate))
