"""Peers that stop reading: each is dropped within close_timeout and costs bounded memory.

Issue 9 items 1 and 4. The attacker shrinks its receive buffer to 4 KiB and never reads; the
server must count every byte it holds for that connection (queued frames, the transport's write
buffer, pongs), apply the slow-consumer policy at 4 MiB and abort a peer that does not drain
within 5 s, while a good subscriber on the same group receives every change in order.
"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx2
import pytest

from .conftest import AbuseServer, describe, scaled
from .harness import (
    CLOSE_TIMEOUT,
    MARGIN,
    MIB,
    RawWebSocket,
    RssSampler,
    build_frame,
    good_subscriber,
    join_message,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# Documented bound of these tests: one attacking connection may raise the server's RSS by at
# most this much (the 4 MiB outbound cap, plus the legitimate traffic's own transient buffers
# and allocator slack), and RSS returns under baseline + AFTER_BOUND_MIB once it is gone.
RSS_BOUND_MIB = 32
AFTER_BOUND_MIB = 64


def _wait_dropped(attacker: RawWebSocket, since: float, within: float) -> float:
    """Seconds from ``since`` until the server let go of the attacker's connection."""
    wait_for(lambda: not attacker.held(), within, "the server to drop the non-reading peer")
    return time.monotonic() - since


def _settle(server: AbuseServer) -> float:
    """Wait (bounded) for RSS to come back under the after-attack bound; return the growth."""
    limit = server.baseline_rss + AFTER_BOUND_MIB * MIB
    deadline = time.monotonic() + 15
    while (rss := server.probe.rss()) > limit and time.monotonic() < deadline:
        time.sleep(0.2)
    return server.grown(rss)


def test_non_reading_subscriber_is_dropped_within_close_timeout_with_bounded_rss(
    todo_server: AbuseServer, soak: bool
) -> None:
    server = todo_server
    count = scaled(soak, 96, 1000)  # 256 KiB each: 24 MiB, far beyond the cap and kernel buffers
    description = "x" * (256 * 1024)
    mark = server.log_mark()
    attacker = RawWebSocket(server.port, rcvbuf=4096)
    try:
        with good_subscriber(server.ws_url) as good, RssSampler(server.probe) as rss:
            attacker.send_text(join_message("inbox", "attacker"))
            ids = []
            started = time.monotonic()
            with httpx2.Client(base_url=server.url, timeout=30) as client:
                for _ in range(count):
                    response = client.post("/todo", json={"description": description})
                    assert response.status_code == 200, response.text[:200]
                    ids.append(response.json()["id"])
            posted = time.monotonic()
            good.wait_created(ids, within=60)
            good.check_in_order(ids)
            try:
                to_drop = _wait_dropped(attacker, posted, CLOSE_TIMEOUT + MARGIN)
            finally:
                print(
                    describe(
                        case="non-reader",
                        posts=count,
                        post_s=posted - started,
                        peak_growth_mib=server.grown(rss.peak),
                        held=attacker.held(),
                    )
                )
        after = _settle(server)
        print(describe(case="non-reader", to_drop_s=to_drop, after_growth_mib=after))
        assert server.grown(rss.peak) <= RSS_BOUND_MIB
        assert after <= AFTER_BOUND_MIB
        server.assert_up()
        lines = server.log_since(mark)
        assert not [line for line in lines if "Traceback" in line]
        assert len(lines) <= 2 * count + 20  # the step's own two info lines per POST
    finally:
        attacker.reset()


async def _post_typing(base_url: str, count: int, pad: str, workers: int = 8) -> None:
    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:

        async def worker(first: int) -> None:
            for seq in range(first, count, workers):
                body = {"userId": f"u-{seq:06d}-{pad}", "isTyping": True}
                response = await client.post("/todo/typing", json=body)
                assert response.status_code == 202, response.text[:200]

        await asyncio.gather(*(worker(first) for first in range(workers)))


def test_small_event_overflow_closes_the_socket_within_close_timeout(
    todo_server: AbuseServer, soak: bool
) -> None:
    server = todo_server
    # ~1.1 KiB frames: the kernel's ~4 MB send buffer fills first, then the outbox overflows
    # (4 MiB or 4,096 frames); 20,000 in the soak run.
    count = scaled(soak, 8000, 20000)
    pad = "p" * 1000
    mark = server.log_mark()
    attacker = RawWebSocket(server.port, rcvbuf=4096)
    try:
        with good_subscriber(server.ws_url) as good, RssSampler(server.probe) as rss:
            attacker.send_text(join_message("inbox", "attacker"))
            started = time.monotonic()
            asyncio.run(_post_typing(server.url, count, pad))
            posted = time.monotonic()
            good.wait_events(count, within=60)
            events = good.events("event")
            seqs = sorted(int(e["event"]["event"]["data"]["userId"][2:8]) for e in events)
            assert seqs == list(range(count)), "the good subscriber missed or repeated events"
            good.check_in_order()
            try:
                to_drop = _wait_dropped(attacker, posted, CLOSE_TIMEOUT + MARGIN)
            finally:
                print(
                    describe(
                        case="small-events",
                        events=count,
                        post_s=posted - started,
                        peak_growth_mib=server.grown(rss.peak),
                        held=attacker.held(),
                    )
                )
        print(describe(case="small-events", to_drop_s=to_drop))
        assert server.grown(rss.peak) <= RSS_BOUND_MIB
        server.assert_up()
        lines = server.log_since(mark)
        assert not [line for line in lines if "Traceback" in line]
        assert len(lines) <= 20
    finally:
        attacker.reset()


def test_ping_flood_without_reading_is_dropped_with_bounded_rss(
    todo_server: AbuseServer, soak: bool
) -> None:
    server = todo_server
    budget = scaled(soak, 64, 256) * MIB
    seconds = scaled(soak, 15, 60)
    chunk = b"".join(build_frame(0x9, b"p" * 125) for _ in range(500))  # 65,500 bytes
    mark = server.log_mark()
    attacker = RawWebSocket(server.port, rcvbuf=4096)
    attacker.sock.settimeout(0.2)
    sent = 0
    dropped_by: str | None = None
    try:
        with good_subscriber(server.ws_url) as good, RssSampler(server.probe) as rss:
            started = time.monotonic()
            while sent < budget and time.monotonic() - started < seconds:
                try:
                    attacker.sock.sendall(chunk)
                    sent += len(chunk)
                except TimeoutError:
                    if not attacker.held():
                        dropped_by = "close"
                        break
                except OSError as exc:  # EPIPE / ECONNRESET: the server aborted us
                    dropped_by = type(exc).__name__
                    break
            flooded = time.monotonic()
            try:
                to_drop = _wait_dropped(attacker, flooded, CLOSE_TIMEOUT + MARGIN)
            finally:
                print(
                    describe(
                        case="ping-flood",
                        sent_mib=sent / MIB,
                        flood_s=flooded - started,
                        dropped_by=dropped_by,
                        peak_growth_mib=server.grown(rss.peak),
                        held=attacker.held(),
                    )
                )
            with httpx2.Client(base_url=server.url, timeout=10) as client:
                response = client.post("/todo", json={"description": "after the flood"})
                assert response.status_code == 200
                good.wait_created([response.json()["id"]], within=15)
            good.check_in_order()
        after = _settle(server)
        print(describe(case="ping-flood", to_drop_s=to_drop, after_growth_mib=after))
        assert server.grown(rss.peak) <= RSS_BOUND_MIB
        assert after <= AFTER_BOUND_MIB
        server.assert_up()
        lines = server.log_since(mark)
        assert not [line for line in lines if "Traceback" in line]
        assert len(lines) <= 20
    finally:
        attacker.reset()


def test_raw_socket_helpers_see_a_connection_the_server_holds(todo_server: AbuseServer) -> None:
    """The probe is not vacuous: a live peer is held; after its reset, it is not."""
    peer = RawWebSocket(todo_server.port)
    peer.send_text(join_message("inbox", "probe"))
    assert peer.recv_json()["event"]["type"] == "sync"
    assert peer.held()
    peer.reset()
    wait_for(lambda: not peer.held(), 10, "the reset connection to go")
    sock = socket.create_connection(("127.0.0.1", todo_server.port))
    sock.close()
