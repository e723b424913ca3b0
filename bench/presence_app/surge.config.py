"""Each connection is user `u<n>` from ?authToken=u<n> (the benchmark gives each user tabs)."""

from surge import AuthRequest, Config, StreamAuth, extract_auth_token


def authenticate(request: AuthRequest) -> dict[str, str] | None:
    """The token is the user id."""
    token = extract_auth_token(request)
    return None if token is None else {"userId": token}


config = Config(stream_auth=StreamAuth(authenticate=authenticate))
