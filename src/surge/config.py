"""Project configuration: what ``surge.config.py`` exports as ``config``.

```python
config = Config(
    stream_auth=StreamAuth(context_schema=AuthContext, authenticate=authenticate),
    adapters=Adapters(streams=FileStreamAdapter(".surge/streams")),
)
```
Every field is optional; ``Config()`` is the default project (file storage, no auth, open CORS).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from surge.server.auth import AuthRequest
    from surge.streams.adapter import StreamAdapter

__all__ = ["Adapters", "Config", "Limits", "StreamAuth"]

Authenticate = Callable[["AuthRequest"], Any | Awaitable[Any]]


@dataclass(frozen=True, kw_only=True)
class StreamAuth:
    """How WebSocket connections are authenticated.

    ``authenticate(request)`` runs once per connection during the upgrade and returns the auth
    context (validated against ``context_schema`` when given), None for an anonymous connection,
    or raises to refuse the upgrade with HTTP 401.
    """

    authenticate: Authenticate
    context_schema: Any = None


@dataclass(frozen=True, kw_only=True)
class Adapters:
    """Pluggable backends; ``streams`` defaults to the durable file store."""

    streams: StreamAdapter | None = None


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-connection limits of the WebSocket endpoint (see the slow-consumer policy)."""

    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 256
    max_errors: int = 16
    outbox_capacity: int = 4096
    access_check_timeout: float = 10.0
    # permessage-deflate costs CPU and ~10s of KB per connection for little gain on small JSON
    # frames, and rules out writing one pre-built frame to every connection: off by default.
    compression: bool = False


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything a project may configure."""

    stream_auth: StreamAuth | None = None
    adapters: Adapters = field(default_factory=Adapters)
    cors_origins: Sequence[str] = ("*",)
    # WebSocket upgrades from other origins are refused when set (cross-site hijacking defence).
    allowed_origins: Sequence[str] | None = None
    limits: Limits = field(default_factory=Limits)
