"""The Workbench as a server plugin: everything it needs, registered through the server's
extension points (``surge.server.plugins``), so the core names it nowhere.

Background work: a ``DeliveryLog`` joins ``app.background.observers`` (the messages view's ring
buffer) and a ``LogBook`` listens on the ``surge.step`` loggers while the Workbench lives (the
logs view); ``EventsApi`` serves their JSON, the flows and the dead-letter buttons.

``surge dev`` installs it (``surge.create_app(..., workbench=True)``); ``surge start`` does not,
so production serves no Workbench route, runs no Workbench gate and tracks no response items.
An app built with ``workbench=True`` and mounted into another (``api.mount("/rt", app)``) serves
it below the mount: ``/rt/__surge/workbench/``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.types import Scope

from surge.server.asgi import query_string
from surge.server.decisions import UpgradeDecision
from surge.server.logs import register_sensitive_param
from surge.server.plugins import HttpRoute
from surge.workbench.access import (
    WORKBENCH_CONTEXT,
    WORKBENCH_QUERY,
    open_to_workbench,
    workbench_upgrade,
)
from surge.workbench.activity import DeliveryLog
from surge.workbench.events_api import EventsApi
from surge.workbench.items import STREAM_ITEM_HEADER, observe, track
from surge.workbench.logbook import LogBook
from surge.workbench.server import Workbench

__all__ = ["WorkbenchPlugin"]


class WorkbenchPlugin:
    """Installs the dev Workbench on a ``SurgeApp`` (``app.workbench`` is then set)."""

    def install(self, app: Any) -> None:
        """Register the Workbench's routes, upgrade gate, access filter and item tracking."""
        runtime = app.runtime
        workbench = Workbench(runtime, app.project_dir)
        workbench.background = app.background  # POST /__surge/api/emit (surge emit)
        app.workbench = workbench
        key = workbench.key
        hosts = runtime.config.workbench_hosts

        async def gate(scope: Scope, headers: Any) -> UpgradeDecision | None:
            query = query_string(scope)
            if WORKBENCH_QUERY not in query:
                return None
            offered = parse_qs(query).get(WORKBENCH_QUERY)
            if not offered:
                return None
            return workbench_upgrade(offered[0], key, headers, hosts)

        deliveries = DeliveryLog()
        app.background.observers.append(deliveries.observe)
        logbook = LogBook()
        logbook.attach(workbench)
        events = EventsApi(runtime, app.background, deliveries, logbook, app.project_dir)

        ext = runtime.extensions
        ext.routes.append(HttpRoute(events.claims, events))  # before the catch-all /__surge/
        ext.routes.append(HttpRoute(workbench.handles, workbench))
        ext.upgrade_gates.append(gate)
        ext.reserved_contexts.append(WORKBENCH_CONTEXT)
        ext.registry_filters.append(open_to_workbench)
        ext.response_hooks.append(track)
        ext.value_observers.append(observe)
        ext.expose_headers.append(STREAM_ITEM_HEADER)
        register_sensitive_param(WORKBENCH_QUERY)
