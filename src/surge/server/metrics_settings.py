"""Whether and where ``/metrics`` is served: ``Config`` fields and environment variables.

Apart from ``surge.server.metrics`` so that deciding costs no ``prometheus_client`` import: an
app without metrics never loads it. The environment wins over ``Config`` (the CLI's
``--metrics-port`` and ``--workers`` reach worker processes through it):

- ``SURGE_METRICS=1``: on (``Config(metrics=True)``; ``surge dev`` always).
- ``SURGE_METRICS_PORT``: a separate port (``Config(metrics_port=...)``); implies on.
- ``SURGE_METRICS_HOST``: its interface (``Config(metrics_host=...)``; default 127.0.0.1, the
  CLI passes the app's ``--host``).
- ``SURGE_WORKERS``: set by ``surge start --workers N`` (each worker takes one of N ports).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from surge.config import Config
from surge.errors import ConfigError

__all__ = [
    "METRICS_ENV",
    "METRICS_HOST_ENV",
    "METRICS_PORT_ENV",
    "WORKERS_ENV",
    "MetricsSettings",
    "metrics_settings",
]

METRICS_ENV = "SURGE_METRICS"
METRICS_PORT_ENV = "SURGE_METRICS_PORT"
METRICS_HOST_ENV = "SURGE_METRICS_HOST"
WORKERS_ENV = "SURGE_WORKERS"


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Whether and where metrics are served (``metrics_settings`` resolves them)."""

    is_on: bool
    port: int | None = None
    """A separate port; None: ``/metrics`` on the app port."""
    host: str | None = None
    """The separate port's interface; None: 127.0.0.1."""
    workers: int = 1


def metrics_settings(config: Config, *, always: bool = False) -> MetricsSettings:
    """The settings from ``config`` and the environment (the environment wins: the CLI sets it).

    Raises:
        ConfigError: ``$SURGE_METRICS_PORT`` or ``$SURGE_WORKERS`` is not a valid number.
    """
    port: int | None = config.metrics_port
    if port is not None and (isinstance(port, bool) or not 0 < port < 65536):
        raise ConfigError(f"Config.metrics_port must be a port number (1-65535), not {port!r}")
    raw_port = os.environ.get(METRICS_PORT_ENV)
    if raw_port:
        if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
            raise ConfigError(f"${METRICS_PORT_ENV} must be a port number, not {raw_port!r}")
        port = int(raw_port)
    raw_workers = os.environ.get(WORKERS_ENV, "1")
    if not raw_workers.isdigit() or int(raw_workers) < 1:
        raise ConfigError(f"${WORKERS_ENV} must be a positive number, not {raw_workers!r}")
    is_on = always or config.metrics or port is not None or os.environ.get(METRICS_ENV) == "1"
    host = os.environ.get(METRICS_HOST_ENV) or config.metrics_host
    return MetricsSettings(is_on, port, host, int(raw_workers))
