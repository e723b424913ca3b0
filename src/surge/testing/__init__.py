"""Public helpers for testing Surge apps.

- ``TestClient`` / ``AsyncTestClient``: the app in-process (no port) with a fresh in-memory
  store, HTTP through httpx2, stream subscriptions through ``surge.client``.
- ``live_server``: the app under uvicorn on a free loopback port, for real sockets.
"""

from surge.testing.client import AsyncTestClient, TestClient
from surge.testing.server import LiveServer, live_server

__all__ = ["AsyncTestClient", "LiveServer", "TestClient", "live_server"]
