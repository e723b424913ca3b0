"""Who may connect: tokens name a user and the projects (chat groups) they belong to.

Imported by surge.config.py (``authenticate``) and by the stream (``AuthContext`` for typing).
"""

from pydantic import BaseModel

from surge import AuthRequest, extract_auth_token


class AuthContext(BaseModel):
    """What a connection carries once authenticated (``context_schema``)."""

    userId: str
    plan: str
    projectIds: list[str]


# Stand-in for a real session store (a database, a JWT check, an auth service).
SESSIONS: dict[str, AuthContext] = {
    "alice-token": AuthContext(userId="alice", plan="pro", projectIds=["project-a", "project-b"]),
    "bob-token": AuthContext(userId="bob", plan="free", projectIds=["project-b"]),
}


async def authenticate(request: AuthRequest) -> AuthContext | None:
    """Return the session for the token; None for anonymous; raise to refuse the upgrade (401)."""
    token = extract_auth_token(request)
    if token is None:
        return None
    session = SESSIONS.get(token)
    if session is None:
        # The message holds the token on purpose, as in the guide: Surge redacts it in its logs.
        raise PermissionError(f"Invalid token: {token}")
    return session
