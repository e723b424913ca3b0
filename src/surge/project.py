"""Loading a project directory: ``surge.config.py``, the storage adapter and the steps."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from surge.config import Config
from surge.errors import ConfigError
from surge.steps.discovery import _error_location
from surge.streams.adapter import StreamAdapter

if TYPE_CHECKING:
    from surge.events.cron import TickLock
    from surge.queues.base import MessageQueue
    from surge.state.base import StateStore

__all__ = ["CONFIG_FILE", "default_adapter", "default_background", "load_config"]

CONFIG_FILE = "surge.config.py"


def load_config(project_dir: Path | str) -> Config:
    """Return the project's ``config`` from surge.config.py, or ``Config()`` when there is none."""
    path = Path(project_dir).resolve() / CONFIG_FILE
    if not path.exists():
        return Config()
    root = str(path.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    name = "surge_project_config"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError("cannot be loaded as a Python module", path=path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ConfigError(f"line {exc.lineno}: syntax error: {exc.msg}", path=path) from exc
    except Exception as exc:
        where = _error_location(exc, path)
        raise ConfigError(f"{where}{type(exc).__name__}: {exc}", path=path) from exc
    config = getattr(module, "config", None)
    if config is None:
        raise ConfigError("defines no `config` (expected `config = Config(...)`)", path=path)
    if not isinstance(config, Config):
        raise ConfigError(
            f"`config` must be a surge.Config, got {type(config).__name__}", path=path
        )
    return config


def default_adapter(project_dir: Path | str, config: Config) -> StreamAdapter:
    """The configured adapter; else Redis when ``SURGE_REDIS_URL`` is set; else memory when
    ``SURGE_STORE=memory``; else the durable file store under ``.surge/streams``."""
    if config.adapters.streams is not None:
        return config.adapters.streams
    if os.environ.get("SURGE_REDIS_URL"):
        from surge.streams.stores.redis import RedisStreamAdapter

        return RedisStreamAdapter(
            os.environ["SURGE_REDIS_URL"], prefix=os.environ.get("SURGE_REDIS_PREFIX", "surge")
        )
    choice = os.environ.get("SURGE_STORE", "file").lower()
    if choice == "memory":
        from surge.streams.stores.memory import MemoryStreamAdapter

        return MemoryStreamAdapter()
    if choice != "file":
        raise ConfigError(f"SURGE_STORE={choice!r}: expected 'file' or 'memory'")
    from surge.streams.stores.file import FileStreamAdapter

    return FileStreamAdapter(Path(project_dir).resolve() / ".surge" / "streams")


def _redis_of(adapter: StreamAdapter) -> dict[str, Any] | None:
    """The URL, prefix and password of a ``RedisStreamAdapter`` (None for other adapters)."""
    module = sys.modules.get("surge.streams.stores.redis")  # not loaded: not a Redis adapter
    if module is None or not isinstance(adapter, module.RedisStreamAdapter):
        return None
    # The adapter keeps its URL private (it may hold a password); the queue needs the same one.
    return {
        "url": adapter._url,
        "prefix": adapter.prefix,
        "password": adapter._password,
    }


def default_background(
    project_dir: Path | str | None, config: Config, adapter: StreamAdapter
) -> tuple[MessageQueue, StateStore, TickLock]:
    """The queue, state store and cron lock next to the stream ``adapter``.

    Configured ones (``Adapters(queue=..., state=...)``) win; else Redis (Redis Streams queue,
    a hash per state group, cron claims in Redis) when the streams are on Redis; in-memory ones
    for the memory store and inline apps; else SQLite files under ``<project>/.surge/``.
    """
    from surge.events.cron import LocalTickLock, RedisTickLock
    from surge.queues.sqlite import SqliteQueue
    from surge.state.memory import MemoryStateStore
    from surge.state.sqlite import SqliteStateStore

    queue = config.adapters.queue
    state = config.adapters.state
    redis = _redis_of(adapter)
    if redis is not None:
        from surge.state.redis import RedisStateStore

        if queue is None:
            from surge.queues.redis import RedisStreamsQueue

            queue = RedisStreamsQueue(redis["url"], prefix=redis["prefix"])
        if state is None:
            state = RedisStateStore(
                redis["url"], prefix=redis["prefix"], password=redis["password"]
            )
        lock: TickLock = RedisTickLock(
            redis["url"], prefix=redis["prefix"], password=redis["password"]
        )
    else:
        lock = LocalTickLock()
    from surge.streams.stores.memory import MemoryStreamAdapter

    if project_dir is None or isinstance(adapter, MemoryStreamAdapter):
        return queue or SqliteQueue(":memory:"), state or MemoryStateStore(), lock
    root = Path(project_dir).resolve() / ".surge"
    queue = queue or SqliteQueue(root / "queue.db")
    state = state or SqliteStateStore(root / "state.db")
    return queue, state, lock
