"""Background work: ``emit``, the event-step runner, the cron scheduler and their lifecycle.

Layer: ``events`` sits on ``steps`` (configs, registry, ``FlowContext``), ``queues`` and ``state``;
the server's lifespan owns one ``Background`` (``system``) and never the other way round.

- ``emit``: ``Publisher`` routes a topic to the queues of its subscribing steps; ``StepEmit`` is
  ``ctx.emit`` (checks the step declared the topic, carries the trace id).
- ``runner``: one consumer per event step (concurrency limit, validation, retries with backoff,
  dead letters, lease renewal, graceful shutdown, hot reload).
- ``cron``: ticks of cron steps, once per deployment (``TickLock``: local, or Redis).
- ``dev``: the Workbench's ``POST /__surge/api/emit`` (``surge emit``).
- ``observers``: the callback list told about each message's life (the Workbench's messages
  view); no observer, no cost.
"""

from surge.events.emit import Publisher, StepEmit
from surge.events.system import Background

__all__ = ["Background", "Publisher", "StepEmit"]
