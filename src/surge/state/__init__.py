"""``ctx.state``: durable key-value state per group (Motia's ``state``), on pluggable stores.

``base`` is the ``StateStore`` Protocol and the ``State`` facade handlers use; the stores are
``memory`` (tests), ``sqlite`` (the default, durable, under ``.surge/``) and ``redis`` (a hash per
group, shared by every instance).
"""

from surge.state.base import State, StateStore

__all__ = ["State", "StateStore"]
