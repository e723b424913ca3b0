"""The server: ASGI app, WebSocket endpoint, outbox, fan-out hub, HTTP step adapter, auth."""
