"""Surge: real-time streams for Python backends, wire-compatible with Motia's stream clients."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from surge.steps.config import (
        ApiRouteConfig,
        CronConfig,
        EventConfig,
        StreamConfig,
        Subscription,
    )
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

# Every public name imports on first use (PEP 562): `surge start`'s supervisor and the CLI's
# other commands import `surge.cli` without the framework, and Redis stays optional.
# A name added to __all__ goes here too (tests/unit/test_public_api.py checks).
_LAZY = {
    "create_app": "surge.app",
    **dict.fromkeys(
        ("Adapters", "Config", "Limits", "PresenceSettings", "StreamAuth"), "surge.config"
    ),
    **dict.fromkeys(
        (
            "AuthError",
            "ConfigError",
            "ConflictError",
            "ProtocolError",
            "StoreError",
            "SurgeError",
            "ValidationError",
        ),
        "surge.errors",
    ),
    "SurgeApp": "surge.server.app",
    **dict.fromkeys(("AuthRequest", "extract_auth_token"), "surge.server.auth"),
    **dict.fromkeys(
        ("ApiRouteConfig", "CronConfig", "EventConfig", "StreamConfig", "Subscription"),
        "surge.steps.config",
    ),
    **dict.fromkeys(
        ("ApiRequest", "ApiResponse", "FlowContext", "StepLogger"), "surge.steps.context"
    ),
    **dict.fromkeys(("GroupPage", "Stream", "Streams", "UpdateResult"), "surge.streams.stream"),
    "FileStreamAdapter": "surge.streams.stores.file",
    "MemoryStreamAdapter": "surge.streams.stores.memory",
    "RedisStreamAdapter": "surge.streams.stores.redis",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'surge' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
