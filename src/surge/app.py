"""``surge.create_app``: the server's app factory plus, on request, the dev Workbench plugin.

This sits above both ``surge.server`` and ``surge.workbench`` (the server never imports the
Workbench); ``surge dev`` calls it with ``workbench=True``, ``surge start`` without.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from surge.server.app import SurgeApp
from surge.server.app import create_app as _create_server_app
from surge.server.plugins import ServerPlugin

__all__ = ["create_app"]


def create_app(
    project_dir: Path | str | None = None,
    *,
    workbench: bool = False,
    plugins: Sequence[ServerPlugin] = (),
    **kwargs: Any,
) -> SurgeApp:
    """Build the app for a project directory, or inline (see ``surge.server.app.create_app``).

    ``workbench=True`` serves the Workbench under ``/__surge/`` (``surge dev``, not production).

    Raises:
        ConfigError: a step file, surge.config.py or a setting is wrong (names the file).
    """
    if workbench:
        from surge.workbench.plugin import WorkbenchPlugin

        plugins = (*plugins, WorkbenchPlugin())
    return _create_server_app(project_dir, plugins=plugins, **kwargs)
