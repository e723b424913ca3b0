"""``MemoryStateStore``: state in a dict, for tests and throw-away runs (``SURGE_STORE=memory``)."""

from __future__ import annotations

__all__ = ["MemoryStateStore"]


class MemoryStateStore:
    """Groups of values in process memory; gone when the process exits."""

    is_distributed = False

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, bytes]] = {}

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close (the data stays until the object goes)."""

    async def get(self, group: str, key: str) -> bytes | None:
        """The value, or None."""
        return self._groups.get(group, {}).get(key)

    async def set(self, group: str, key: str, value: bytes) -> None:
        """Create or replace (a replaced key keeps its place)."""
        self._groups.setdefault(group, {})[key] = value

    async def delete(self, group: str, key: str) -> bytes | None:
        """Remove and return the value."""
        values = self._groups.get(group)
        if values is None:
            return None
        value = values.pop(key, None)
        if not values:
            del self._groups[group]
        return value

    async def get_group(self, group: str) -> list[bytes]:
        """The group's values in creation order."""
        return list(self._groups.get(group, {}).values())

    async def clear(self, group: str) -> None:
        """Drop the group."""
        self._groups.pop(group, None)
