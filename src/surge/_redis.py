"""Turning redis-py errors into ``StoreError``s that say whether to retry (stores and queues)."""

from __future__ import annotations

from typing import Final

from surge.errors import StoreError

__all__ = ["RETRYABLE_REPLIES", "redis_error"]

# Error replies after which the same command may succeed later (failover, loading, busy script).
RETRYABLE_REPLIES: Final = (
    "BUSY",
    "LOADING",
    "READONLY",
    "OOM",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "NOREPLICAS",
)


def redis_error(exc: BaseException, action: str, where: str) -> StoreError:
    """Wrap ``exc`` (raised during ``action`` against Redis at ``where``) in a ``StoreError``."""
    from redis import exceptions as rex

    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError):
        return StoreError(f"{action}: Redis at {where} refused access: {exc}")
    if isinstance(exc, rex.ConnectionError | rex.TimeoutError | OSError | TimeoutError):
        return StoreError(f"{action}: Redis at {where} is unavailable: {exc}", retryable=True)
    if isinstance(exc, rex.ResponseError):
        retryable = str(exc).startswith(RETRYABLE_REPLIES)
        return StoreError(f"{action}: Redis replied: {exc}", retryable=retryable)
    return StoreError(f"{action} failed: {exc!r}")
