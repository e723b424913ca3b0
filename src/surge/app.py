"""``surge.create_app``: the server's app factory plus the optional plugins.

This sits above ``surge.server``, ``surge.workbench`` and ``surge.openapi`` (the server imports
none of them); ``surge dev`` calls it with ``workbench=True``, which also serves the OpenAPI
document and docs page; ``surge start`` serves those only with ``Config(openapi=True)``.
Metrics (``surge.server.metrics``) when ``surge.server.metrics_settings`` says so, and the
read-only admin view (``surge.server.admin``) when ``$SURGE_ADMIN_TOKEN`` is set, OpenTelemetry
traces (``surge.server.otel``) when ``surge.tracing.tracing_wanted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.types import Scope

from surge.server.admin import AdminPlugin, admin_token
from surge.server.app import SurgeApp
from surge.server.app import create_app as _create_server_app
from surge.server.asgi import route_path
from surge.server.metrics_settings import metrics_settings
from surge.server.plugins import HttpRoute, ServerPlugin
from surge.tracing import tracing_wanted

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
    app = _create_server_app(project_dir, plugins=plugins, **kwargs)
    if workbench or app.runtime.config.openapi:
        OpenApiPlugin().install(app)
    if tracing_wanted(app.runtime.config.tracing):
        from surge.server.otel import OtelPlugin  # opentelemetry: only when tracing

        OtelPlugin().install(app)
    token = admin_token()  # $SURGE_ADMIN_TOKEN: the read-only admin view
    if token is not None:
        AdminPlugin(token).install(app)
    metrics = metrics_settings(app.runtime.config, always=workbench)
    if metrics.is_on:
        from surge.server.metrics import MetricsPlugin  # prometheus_client: only when on

        MetricsPlugin(metrics).install(app)
    return app


class OpenApiPlugin:
    """Serves ``/openapi.json`` and ``/docs`` (``surge.openapi``) in front of the API steps."""

    def install(self, app: SurgeApp) -> None:
        """Register the document and docs page as a plugin route."""
        from surge.openapi import openapi_routes

        docs = openapi_routes(app)
        runtime = app.runtime

        def claims(scope: Scope) -> bool:
            # The project's own routes win: a step at /docs keeps it.
            if not docs.handles(scope):
                return False
            return runtime.registry.match(scope["method"], route_path(scope)) is None

        runtime.extensions.routes.append(HttpRoute(claims, docs))
