"""Surge's async Python client of the stream protocol (wire-compatible with Motia's servers).

```python
import surge.client

async with surge.client.connect("ws://localhost:3000/", token="...") as client:
    inbox = await client.subscribe_group("todo", "inbox")     # returns once synced
    inbox.on_change(lambda change: print(change.kind, change.id))
    inbox.on_event("typing", lambda data: print("typing", data))
    await inbox.wait(lambda todos: len(todos) >= 3, timeout=30)
    async for change in inbox.changes():
        ...
```

The client reconnects forever with jittered exponential backoff (except after a 401 or 403 on
the upgrade or a 4003 close, unless ``retry_refused``; a 429 or 503 waits for its Retry-After;
after a 4029 close the delays keep growing), re-joins
every subscription with its subscriptionId and replaces its state from the fresh sync. The
protocol code is independent of the connection (``Transport``): ``surge.testing`` drives an app
in-process with the same client.
"""

from surge.client.backoff import Backoff
from surge.client.client import Client, ConnectionState, connect
from surge.client.errors import (
    AccessRevoked,
    ChangesOverflow,
    ClientClosed,
    ClientError,
    SubscriptionError,
    TransportClosed,
    UpgradeRefused,
)
from surge.client.state import Change, ChangeKind
from surge.client.subscription import (
    ChangeIterator,
    GroupSubscription,
    ItemSubscription,
    Subscription,
)
from surge.client.transport import TokenVia, Transport, TransportConnection, WebSocketTransport

__all__ = [
    "AccessRevoked",
    "Backoff",
    "Change",
    "ChangeIterator",
    "ChangeKind",
    "ChangesOverflow",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectionState",
    "GroupSubscription",
    "ItemSubscription",
    "Subscription",
    "SubscriptionError",
    "TokenVia",
    "Transport",
    "TransportClosed",
    "TransportConnection",
    "UpgradeRefused",
    "WebSocketTransport",
    "connect",
]
