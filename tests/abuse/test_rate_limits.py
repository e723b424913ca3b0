"""Frame floods next to a well-behaved client, on a real ``surge start`` with the default limits.

Issue 15 item 4: a client over its rate limit gets an error event, then the 4029 close, and
never slows the server down for others. Flooders on raw sockets send tiny frames as fast as the
socket takes them, reconnecting after each close; meanwhile a good subscriber must get every
change, in order, each within a bound of the write that made it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

import httpx2
import pytest

from .conftest import AbuseServer, describe, scaled
from .harness import MARGIN, RawWebSocket, build_frame, good_subscriber

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# A change must reach the good subscriber within this long while the floods run (it takes
# milliseconds unloaded; the bound is generous for a shared, loaded machine, and far below what
# a stalled event loop would cost: the floods run for FLOOD_SECONDS).
LATENCY_BOUND_S = 2.0
FLOODERS = 3


def _poll_close_code(peer: RawWebSocket) -> int | None:
    """Read what has arrived without blocking; the close code if a close frame is among it."""
    peer.sock.setblocking(False)
    try:
        while True:
            chunk = peer.sock.recv(1 << 16)
            if not chunk:
                return -1  # the server closed the TCP connection
            peer.buffer += chunk
    except (BlockingIOError, InterruptedError):
        pass
    finally:
        peer.sock.settimeout(5.0)
    while (frame := peer._parse()) is not None:
        opcode, payload = frame
        if opcode == 0x8:
            return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005
    return None


def _flood(port: int, stop: threading.Event, closes: list[int], sent: list[int]) -> None:
    chunk = b"".join(build_frame(0x1, b'{"type":"noop"}') for _ in range(500))
    while not stop.is_set():
        try:
            peer = RawWebSocket(port)
        except (OSError, AssertionError):
            continue
        try:
            while not stop.is_set():
                peer.send(chunk)
                sent.append(500)
                code = _poll_close_code(peer)
                if code is not None:
                    closes.append(code)
                    break
        except OSError:
            closes.append(-1)
        finally:
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)
            peer.close()


def test_flooding_clients_are_closed_with_4029_and_a_good_client_keeps_its_latency(
    todo_server: AbuseServer, soak: bool
) -> None:
    server = todo_server
    writes = scaled(soak, 30, 300)
    stop = threading.Event()
    closes: list[int] = []
    sent: list[int] = []
    latencies: list[float] = []
    with good_subscriber(server.ws_url) as good, httpx2.Client(base_url=server.url) as http:
        flooders = [
            threading.Thread(target=_flood, args=(server.port, stop, closes, sent), daemon=True)
            for _ in range(FLOODERS)
        ]
        cpu_before = server.probe.cpu_seconds()
        flood_started = time.monotonic()
        for flooder in flooders:
            flooder.start()
        try:
            ids = []
            for n in range(writes):
                started = time.monotonic()
                response = http.post("/todo", json={"description": f"during the flood {n}"})
                assert response.status_code == 200, response.text
                todo_id = response.json()["id"]
                ids.append(todo_id)
                good.wait_created([todo_id], within=LATENCY_BOUND_S + MARGIN)
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)  # a steady trickle of changes while the floods run
        finally:
            stop.set()
            for flooder in flooders:
                flooder.join(15)
        flood_s = time.monotonic() - flood_started
        server_cpu = server.probe.cpu_seconds() - cpu_before
        good.check_in_order(ids)
    latencies.sort()
    print(
        describe(
            case="rate-limit-flood",
            writes=writes,
            frames_sent=sum(sent),
            flood_s=flood_s,
            server_cpu_s=server_cpu,
            closes=len(closes),
            closes_4029=closes.count(4029),
            p50_ms=latencies[len(latencies) // 2] * 1000,
            max_ms=latencies[-1] * 1000,
        )
    )
    assert closes.count(4029) >= FLOODERS, closes  # every flooder was cut off at least once
    assert latencies[-1] <= LATENCY_BOUND_S, latencies
    server.assert_up()
