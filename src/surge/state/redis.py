"""``RedisStateStore``: ``ctx.state`` in Redis, one hash per group, shared by every instance.

Keys: ``<prefix>:state:<group>`` (a hash of key -> JSON). redis-py is imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from surge.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStateStore"]

_TIMEOUT_S: Final = 5.0


class RedisStateStore:
    """State in Redis at ``url`` under ``prefix``."""

    is_distributed = True

    def __init__(self, url: str, *, prefix: str = "surge", password: str | None = None) -> None:
        if not prefix or any(c in prefix for c in "*?[]\\"):
            raise ConfigError(f"Redis prefix {prefix!r} must be non-empty, without *?[]\\")
        self._url = url
        self._password = password
        self.prefix = prefix
        self._client: Redis | None = None

    def key(self, group: str) -> str:
        """The hash holding ``group``."""
        return f"{self.prefix}:state:{group}"

    async def open(self) -> None:
        """Connect (lazily: the first command connects); idempotent.

        Raises:
            ConfigError: redis-py is not installed or the URL is invalid.
        """
        if self._client is not None:
            return
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - redis is a dev/optional dependency
            raise ConfigError("the Redis state store needs redis-py: pip install redis") from exc
        options: dict[str, Any] = {
            "socket_connect_timeout": _TIMEOUT_S,
            "socket_timeout": _TIMEOUT_S,
        }
        if self._password is not None:
            options["password"] = self._password
        try:
            self._client = aioredis.Redis.from_url(self._url, **options)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL for the state store: {exc}") from exc

    async def close(self) -> None:
        """Close the connections; idempotent."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def _redis(self) -> Redis:
        if self._client is None:
            raise StoreError("state store is not open")
        return self._client

    async def _call(self, what: str, coro: Any) -> Any:
        import redis

        try:
            return await coro
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreError(f"state store: Redis {what} failed: {exc}", retryable=True) from exc
        except redis.RedisError as exc:
            raise StoreError(f"state store: Redis {what} failed: {exc}") from exc

    async def get(self, group: str, key: str) -> bytes | None:
        """The value, or None."""
        value: bytes | None = await self._call("HGET", self._redis.hget(self.key(group), key))
        return value

    async def set(self, group: str, key: str, value: bytes) -> None:
        """Create or replace."""
        await self._call("HSET", self._redis.hset(self.key(group), key, value))

    async def delete(self, group: str, key: str) -> bytes | None:
        """Remove and return the value (one MULTI/EXEC: no other write in between)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hget(self.key(group), key)
        pipe.hdel(self.key(group), key)
        value, _ = await self._call("HGET/HDEL", pipe.execute())
        result: bytes | None = value
        return result

    async def get_group(self, group: str) -> list[bytes]:
        """The group's values (Redis keeps no order)."""
        values: list[bytes] = await self._call("HVALS", self._redis.hvals(self.key(group)))
        return values

    async def clear(self, group: str) -> None:
        """Drop the group."""
        await self._call("DEL", self._redis.delete(self.key(group)))
