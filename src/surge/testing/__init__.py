"""Public helpers for testing Surge apps: a live server on a free loopback port."""

from surge.testing.server import LiveServer, live_server

__all__ = ["LiveServer", "live_server"]
