"""The Workbench: a page served by ``surge dev`` to call API steps and watch streams live.

``plugin`` installs it on an app through the server's extension points; ``server`` serves the
page and its JSON endpoints under ``/__surge/``; ``describe`` turns the registry into JSON;
``access`` is its key past stream auth; ``items`` marks responses that are stream items. The
page itself is plain JavaScript modules in ``static/`` that speak the stream protocol over a
WebSocket of their own.
"""

from surge.workbench.access import WORKBENCH_CONTEXT
from surge.workbench.plugin import WorkbenchPlugin
from surge.workbench.server import PAGE_PATH, PREFIX, Workbench

__all__ = ["PAGE_PATH", "PREFIX", "WORKBENCH_CONTEXT", "Workbench", "WorkbenchPlugin"]
