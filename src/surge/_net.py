"""The listening socket, shared by ``surge start`` (``cli.spawn``) and the in-process server
(``server.serve``); standard library only, so the CLI can bind before it imports the framework.

The accept backlog is as deep as the system allows: the kernel caps ``listen``'s argument at
``net.core.somaxconn`` (4,096 by default on current Linux). A reconnect storm (every client of a
restarted server at once) that overflows the backlog has its SYNs dropped, and those clients wait
for their kernel's SYN retransmission, a whole second, before they are even queued.
"""

from __future__ import annotations

import socket

__all__ = ["LISTEN_BACKLOG", "bind_listener"]

LISTEN_BACKLOG = 65535
"""Asked of ``listen``; the kernel lowers it to ``net.core.somaxconn``."""


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock
