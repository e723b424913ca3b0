"""Surge: real-time streams for Python backends, wire-compatible with Motia's stream clients."""

from surge.app import create_app
from surge.config import Adapters, Config, Limits, PresenceSettings, StreamAuth
from surge.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ProtocolError,
    StoreError,
    SurgeError,
    ValidationError,
)
from surge.server.app import SurgeApp
from surge.server.auth import AuthRequest, extract_auth_token
from surge.steps.config import ApiRouteConfig, CronConfig, EventConfig, StreamConfig, Subscription
from surge.steps.context import ApiRequest, ApiResponse, FlowContext, StepLogger
from surge.streams.stream import GroupPage, Stream, Streams, UpdateResult

__version__ = "0.1.0"

__all__ = [
    "Adapters",
    "ApiRequest",
    "ApiResponse",
    "ApiRouteConfig",
    "AuthError",
    "AuthRequest",
    "Config",
    "ConfigError",
    "ConflictError",
    "CronConfig",
    "EventConfig",
    "FlowContext",
    "GroupPage",
    "Limits",
    "PresenceSettings",
    "ProtocolError",
    "StepLogger",
    "StoreError",
    "Stream",
    "StreamAuth",
    "StreamConfig",
    "Streams",
    "Subscription",
    "SurgeApp",
    "SurgeError",
    "UpdateResult",
    "ValidationError",
    "create_app",
    "extract_auth_token",
]


def __getattr__(name: str) -> object:
    # Adapters import lazily so that `import surge` stays light and Redis stays optional.
    if name == "FileStreamAdapter":
        from surge.streams.stores.file import FileStreamAdapter

        return FileStreamAdapter
    if name == "MemoryStreamAdapter":
        from surge.streams.stores.memory import MemoryStreamAdapter

        return MemoryStreamAdapter
    if name == "RedisStreamAdapter":
        from surge.streams.stores.redis import RedisStreamAdapter

        return RedisStreamAdapter
    raise AttributeError(f"module 'surge' has no attribute {name!r}")
