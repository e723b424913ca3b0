"""Integration tests: a live Surge server on port 0 driven by real WebSocket and HTTP clients."""
