"""The flow view's JSON: which step emits which topic, who subscribes, when each cron runs next."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from surge.events.cron import next_tick

if TYPE_CHECKING:
    from surge.steps.registry import Registry

__all__ = ["describe_flows"]


def _source(path: Path | None, root: Path | None) -> str | None:
    if path is None:
        return None
    if root is not None and path.is_relative_to(root):
        return str(path.relative_to(root))
    return str(path)


def describe_flows(registry: Registry, root: Path | None, now: float) -> dict[str, Any]:
    """``{"steps", "topics", "flows"}`` of ``registry``; cron next ticks computed after ``now``.

    - ``steps``: every API, event and cron step with what it ``emits`` and ``subscribes`` to
      (cron steps also have ``cron`` and ``nextTick``, epoch seconds), sorted by type then name;
    - ``topics``: every topic some step emits or subscribes to, with its ``emitters`` and
      ``subscribers`` (step names); ``isUnsubscribed``/``isUnemitted`` flag the loose ends;
    - ``flows``: Motia's ``flows`` names -> their step names.
    """
    steps: list[dict[str, Any]] = []
    for route in registry.routes:
        api = route.config
        steps.append(
            {
                "name": api.name,
                "type": "api",
                "method": api.method,
                "path": api.path,
                "emits": list(api.emits),
                "subscribes": [],
                "flows": list(api.flows),
                "description": api.description,
                "source": _source(route.source, root),
            }
        )
    for event in registry.events:
        config = event.config
        steps.append(
            {
                "name": config.name,
                "type": "event",
                "emits": list(config.emits),
                "subscribes": list(config.subscribes),
                "flows": list(config.flows),
                "description": config.description,
                "concurrency": config.concurrency,
                "maxRetries": config.max_retries,
                "fifo": config.fifo,
                "source": _source(event.source, root),
            }
        )
    for cron in registry.crons:
        schedule = cron.config
        try:
            tick: float | None = next_tick(schedule, now)
        except Exception:  # validated at startup; a view must not fail on one odd expression
            tick = None
        steps.append(
            {
                "name": schedule.name,
                "type": "cron",
                "cron": schedule.cron,
                "nextTick": tick,
                "emits": list(schedule.emits),
                "subscribes": [],
                "flows": list(schedule.flows),
                "description": schedule.description,
                "source": _source(cron.source, root),
            }
        )
    order = {"api": 0, "event": 1, "cron": 2}
    steps.sort(key=lambda s: (order[s["type"]], s["name"]))

    emitters: dict[str, list[str]] = {}
    subscribers: dict[str, list[str]] = {}
    flows: dict[str, list[str]] = {}
    for step in steps:
        for topic in step["emits"]:
            emitters.setdefault(topic, []).append(step["name"])
        for topic in step["subscribes"]:
            subscribers.setdefault(topic, []).append(step["name"])
        for flow in step["flows"]:
            flows.setdefault(flow, []).append(step["name"])
    topics = [
        {
            "topic": topic,
            "emitters": emitters.get(topic, []),
            "subscribers": subscribers.get(topic, []),
            "isUnsubscribed": topic not in subscribers,
            "isUnemitted": topic not in emitters,
        }
        for topic in sorted({*emitters, *subscribers})
    ]
    return {"steps": steps, "topics": topics, "flows": flows, "now": now}
