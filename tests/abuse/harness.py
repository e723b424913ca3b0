"""Tools of the abuse suite: measure a server process, attack it over raw sockets, watch a subscriber.

Everything is synchronous (plain sockets and threads) so that an attack, a good subscriber and an
RSS sampler can run side by side without sharing an event loop. Every wait has a deadline.

Measurements read the server's own /proc entries: ``VmRSS`` from ``status``, ``utime + stime``
from ``stat``, open descriptors from ``fd``, and the server side of a TCP connection from
``/proc/net/tcp`` (a connection is *held* while the server process still has a socket for it).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx2
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

__all__ = [
    "CLOSE_TIMEOUT",
    "MARGIN",
    "MIB",
    "GoodSubscriber",
    "RawWebSocket",
    "RssSampler",
    "ServerProbe",
    "build_frame",
    "connection_held",
    "good_subscriber",
    "held_client_ports",
    "http_get_ok",
    "join_message",
    "wait_for",
]

MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")

# Target limits of issue 9 (surge.config.Limits); the tests assert against these.
MAX_OUTBOUND_BYTES = 4 * MIB
CLOSE_TIMEOUT = 5.0
HEADER_TIMEOUT = 10.0
MAX_HEADER_BYTES = 64 * 1024
BODY_TIMEOUT = 30.0
KEEP_ALIVE_TIMEOUT = 5.0
# The machine is shared and loaded: every "within X s" gets this much on top.
MARGIN = 10.0


def wait_for(check: Callable[[], T | None], within: float, what: str, interval: float = 0.05) -> T:
    """Call ``check`` until it returns something other than None/False; fail at the deadline."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.1f} s waiting for {what}")
        time.sleep(interval)


# -- the server process ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerProbe:
    """Reads a server process's memory, CPU time and descriptors from /proc."""

    pid: int

    def rss(self) -> int:
        """Resident set size in bytes (``VmRSS``)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def cpu_seconds(self) -> float:
        """User + system CPU time consumed so far."""
        with open(f"/proc/{self.pid}/stat") as stat:
            # The command name (field 2) may hold spaces: split after its closing parenthesis.
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def fd_count(self) -> int:
        """Open file descriptors."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def is_alive(self) -> bool:
        """True while the process exists and is not a zombie."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    def wait_idle(
        self, *, within: float, window: float = 1.0, busy_below: float = 0.15
    ) -> tuple[float, float]:
        """Wait for a ``window`` in which the process used under ``busy_below`` CPU seconds.

        Returns (seconds until that window began, CPU seconds used before it). Fails at the
        deadline.
        """
        start = time.monotonic()
        cpu_start = self.cpu_seconds()
        while True:
            window_start = time.monotonic()
            before = self.cpu_seconds()
            time.sleep(window)
            used = self.cpu_seconds() - before
            if used < busy_below * window:
                return window_start - start, before - cpu_start
            if time.monotonic() - start > within:
                raise AssertionError(
                    f"server still busy {within:.0f} s later "
                    f"({self.cpu_seconds() - cpu_start:.1f} CPU s since)"
                )


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread; ``peak`` is the maximum."""

    def __init__(self, probe: ServerProbe, interval: float = 0.05) -> None:
        self.probe = probe
        self.interval = interval
        self.peak = probe.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError, AssertionError):
                self.peak = max(self.peak, self.probe.rss())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def held_client_ports(server_port: int) -> set[int]:
    """The client ports of every connection a process still owns on ``server_port``."""
    local = f"0100007F:{server_port:04X}"
    ports = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[1] == local and fields[9] != "0":
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def connection_held(server_port: int, client_port: int) -> bool:
    """True while a process still owns the server side of this loopback TCP connection.

    A connection the server closed with data unsent lingers in the kernel (FIN_WAIT1, inode 0):
    the server no longer holds it, so that counts as dropped.
    """
    local = f"0100007F:{server_port:04X}"
    remote = f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[1] == local and fields[2] == remote and fields[9] != "0":
                return True
    return False


def http_get_ok(base_url: str, path: str = "/todo", within: float = 5.0) -> int:
    """A normal GET answers (any status below 500) within ``within`` seconds; returns the status."""
    response = httpx2.get(base_url + path, timeout=within)
    assert response.status_code < 500, (response.status_code, response.text[:200])
    return response.status_code


# -- raw WebSocket -----------------------------------------------------------------------------


def build_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """One WebSocket frame as a client sends it (masked unless told otherwise)."""
    head = bytearray([(0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)])
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) if payload else b""
    return bytes(head) + key + masked


def join_message(group: str, subscription_id: str, stream: str = "todo", **extra: Any) -> bytes:
    """A join frame's JSON text."""
    data = {"streamName": stream, "groupId": group, "subscriptionId": subscription_id, **extra}
    return json.dumps({"type": "join", "data": data}).encode()


class RawWebSocket:
    """A WebSocket client on a plain socket: it sends whatever it is told and reads only on demand.

    ``rcvbuf`` shrinks the receive buffer before connecting (a peer that stops reading then
    stops the server's writes after a few KiB).
    """

    def __init__(
        self,
        port: int,
        *,
        path: str = "/",
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 5.0,
        expect_status: int | None = 101,
        host: str | None = None,
    ) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.client_port: int = self.sock.getsockname()[1]
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host or f'127.0.0.1:{port}'}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.buffer = b""
        head = self._read_head()
        self.status = int(head.split(b" ", 2)[1])
        if expect_status is not None and self.status != expect_status:
            self.sock.close()
            raise AssertionError(f"upgrade answered {head[:300]!r}")

    def _read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"connection closed during the handshake: {self.buffer!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def send(self, data: bytes) -> None:
        """Send raw bytes (frames built with ``build_frame``)."""
        self.sock.sendall(data)

    def send_text(self, payload: bytes) -> None:
        """One masked text frame."""
        self.send(build_frame(0x1, payload))

    def held(self) -> bool:
        """True while the server still holds this connection."""
        return connection_held(self.port, self.client_port)

    def recv_frame(self, within: float = 5.0) -> tuple[int, bytes]:
        """Read one (unfragmented, unmasked) server frame: (opcode, payload)."""
        deadline = time.monotonic() + within
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        opcode = buf[0] & 0x0F
        length = buf[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack("!H", buf[2:4])
            offset = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack("!Q", buf[2:10])
            offset = 10
        if len(buf) < offset + length:
            return None
        self.buffer = buf[offset + length :]
        return opcode, buf[offset : offset + length]

    def recv_json(self, within: float = 5.0) -> dict[str, Any]:
        """Read text frames until one holds JSON (skipping pings); return it."""
        deadline = time.monotonic() + within
        while True:
            opcode, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if opcode == 0x1:
                message: dict[str, Any] = json.loads(payload)
                return message
            if opcode == 0x8:
                raise ConnectionError(f"close frame {payload!r}")

    def reset(self) -> None:
        """Close with an RST (SO_LINGER 0): no FIN, whatever is unread is discarded."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        """Close the socket (FIN)."""
        self.sock.close()


# -- a well-behaved subscriber -----------------------------------------------------------------


@dataclass
class GoodSubscriber:
    """A websockets client on todo/inbox that reads everything, in a thread of its own.

    ``frames`` holds every envelope after the sync; ``check_in_order`` verifies what it got.
    """

    ws_url: str
    group: str = "inbox"
    stream: str = "todo"
    frames: list[dict[str, Any]] = field(default_factory=list)
    closed: BaseException | None = None
    _ws: ClientConnection | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _synced: threading.Event = field(default_factory=threading.Event)
    _closing: bool = False

    def start(self, within: float = 30.0) -> GoodSubscriber:
        """Connect, join, wait for the sync, then keep reading in the background."""
        self._thread = threading.Thread(target=self._run, name="good-subscriber", daemon=True)
        self._thread.start()
        if not self._synced.wait(within):
            raise AssertionError(f"the good subscriber got no sync within {within} s")
        if self.closed is not None:
            raise AssertionError(f"the good subscriber could not join: {self.closed!r}")
        return self

    def _run(self) -> None:
        data = {"streamName": self.stream, "groupId": self.group, "subscriptionId": "good"}
        try:
            # No keepalive pings of its own (the server pings; this answers): their payloads come
            # from the `random` module, which Hypothesis flags when it moves during a fuzz draw.
            with ws_connect(
                self.ws_url, max_size=None, open_timeout=10, close_timeout=2, ping_interval=None
            ) as ws:
                self._ws = ws
                ws.send(json.dumps({"type": "join", "data": data}))
                sync = json.loads(ws.recv(timeout=30))
                assert sync["event"]["type"] == "sync", sync
                self._synced.set()
                for raw in ws:
                    frame = json.loads(raw)
                    with self._lock:
                        self.frames.append(frame)
        except Exception as exc:  # recorded and asserted by the test
            self.closed = exc
        else:
            if not self._closing:
                self.closed = ConnectionError("the server closed the good subscriber")
        finally:
            self._synced.set()

    def snapshot(self) -> list[dict[str, Any]]:
        """The frames received so far."""
        with self._lock:
            return list(self.frames)

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The envelopes whose event type is ``kind`` (create, update, delete, event)."""
        return [f for f in self.snapshot() if f["event"]["type"] == kind]

    def wait_created(self, ids: Sequence[str], within: float) -> None:
        """Wait until a create of every id in ``ids`` has arrived."""
        wanted = set(ids)

        def done() -> bool:
            self._check_alive()
            return wanted <= {f["id"] for f in self.events("create")}

        wait_for(done, within, f"the good subscriber to receive {len(wanted)} creates")

    def wait_events(self, count: int, within: float) -> None:
        """Wait until ``count`` ephemeral events have arrived."""

        def done() -> bool:
            self._check_alive()
            return len(self.events("event")) >= count

        wait_for(done, within, f"the good subscriber to receive {count} events")

    def _check_alive(self) -> None:
        if self.closed is not None:
            raise AssertionError(f"the good subscriber was dropped: {self.closed!r}")

    def check_in_order(self, created_ids: Sequence[str] | None = None) -> None:
        """Timestamps strictly increase; creates arrive once each, in ``created_ids`` order."""
        frames = self.snapshot()
        stamps = [f["timestamp"] for f in frames]
        assert all(a < b for a, b in itertools.pairwise(stamps)), "timestamps"
        creates = [f["id"] for f in frames if f["event"]["type"] == "create"]
        assert len(creates) == len(set(creates)), "a create arrived twice"
        if created_ids is not None:
            assert creates == list(created_ids), "creates out of order or missing"

    def close(self) -> None:
        """Close the connection and join the reader thread."""
        self._closing = True
        if self._ws is not None:
            self._ws.close()
        if self._thread is not None:
            self._thread.join(5)


@contextlib.contextmanager
def good_subscriber(ws_url: str) -> Iterator[GoodSubscriber]:
    """A started ``GoodSubscriber``, closed at the end of the block."""
    subscriber = GoodSubscriber(ws_url).start()
    try:
        yield subscriber
    finally:
        subscriber.close()
