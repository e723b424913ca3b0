"""HTTP connections are bounded in time and bytes: slowloris, slow bodies, header bombs, fd limit.

Issue 9 item 5. Targets (surge.config.Limits): headers complete within ``header_timeout`` (10 s),
at most ``max_header_bytes`` (64 KiB, bigger: 431 or close), a body that stops coming is closed
after ``body_timeout`` (30 s idle, or answered 408), keep-alive idle 5 s, and a normal GET keeps
being answered while attackers hold connections.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx2
import pytest

from .conftest import AbuseServer, describe, scaled
from .harness import (
    BODY_TIMEOUT,
    HEADER_TIMEOUT,
    KEEP_ALIVE_TIMEOUT,
    MARGIN,
    MAX_HEADER_BYTES,
    MIB,
    RssSampler,
    connection_held,
    held_client_ports,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# Documented bound: these attacks (hundreds of connections, unfinished 16 MiB headers) may raise
# the server's RSS by at most this much.
HTTP_RSS_BOUND_MIB = 32


@dataclass
class Trickler:
    """One attacking HTTP connection; ``closed_after`` is set when the server lets it go."""

    sock: socket.socket
    port: int
    opened: float
    closed_after: float | None = None
    answer: bytes = b""
    seen_held: bool = False

    def __post_init__(self) -> None:
        self.client_port: int = self.sock.getsockname()[1]

    def check(self, now: float, held: set[int]) -> None:
        """Notice a close (EOF, reset, an answer such as 408/431, or no longer ``held``)."""
        if self.closed_after is not None:
            return
        try:
            data = self.sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            data = None
        except OSError:
            self.closed_after = now - self.opened
            return
        if data is not None:
            self.answer += data
        # Not yet accepted (still in the backlog) looks the same as gone: only a connection
        # seen held before counts as dropped when it disappears.
        if self.client_port in held:
            self.seen_held = True
        if data == b"" or (self.seen_held and self.client_port not in held):
            self.closed_after = now - self.opened

    def send(self, data: bytes, now: float) -> None:
        """Send without blocking; a failure means the server closed the connection."""
        if self.closed_after is not None:
            return
        try:
            self.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        except OSError:
            self.closed_after = now - self.opened


def _open(port: int, first: bytes, count: int) -> list[Trickler]:
    conns = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(first)
        # Non-blocking: with a timeout set, CPython waits for readiness even with MSG_DONTWAIT.
        sock.setblocking(False)
        conns.append(Trickler(sock, port, time.monotonic()))
    return conns


@contextlib.contextmanager
def _closing(conns: list[Trickler]) -> Iterator[list[Trickler]]:
    try:
        yield conns
    finally:
        for conn in conns:
            conn.sock.close()


def _probe_get(url: str, latencies: list[float]) -> None:
    started = time.monotonic()
    response = httpx2.get(url + "/todo", timeout=5)
    assert response.status_code == 200, response.status_code
    latencies.append(time.monotonic() - started)


def test_slowloris_and_slow_bodies_are_closed_while_normal_gets_are_answered(
    todo_server: AbuseServer, soak: bool
) -> None:
    server = todo_server
    lorises = scaled(soak, 100, 400)
    bodies = scaled(soak, 50, 200)
    request_head = b"GET /todo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    post_head = (
        b"POST /todo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n" + b'{"description": "' + b"s" * 100
    )
    mark = server.log_mark()
    latencies: list[float] = []
    with (
        RssSampler(server.probe) as rss,
        _closing(_open(server.port, request_head, lorises)) as slow_heads,
        _closing(_open(server.port, post_head, bodies)) as slow_bodies,
    ):
        started = time.monotonic()
        deadline = started + BODY_TIMEOUT + MARGIN
        next_get = started
        while time.monotonic() < deadline:
            now = time.monotonic()
            held = held_client_ports(server.port)
            for conn in slow_heads:
                conn.send(b"a", now)  # one header byte per connection per 0.5 s, never done
                conn.check(now, held)
            for conn in slow_bodies:
                conn.check(now, held)  # the body stopped after 100 bytes of 100,000
            if now >= next_get:
                _probe_get(server.url, latencies)
                next_get = now + 2
            heads_done = all(c.closed_after is not None for c in slow_heads)
            if heads_done and all(c.closed_after is not None for c in slow_bodies):
                break
            if not heads_done and now - started > HEADER_TIMEOUT + MARGIN:
                break  # the slowloris deadline is the shorter one: fail now
            time.sleep(0.5)
        open_heads = [c for c in slow_heads if c.closed_after is None]
        open_bodies = [c for c in slow_bodies if c.closed_after is None]
        head_times = [c.closed_after for c in slow_heads if c.closed_after is not None]
        body_times = [c.closed_after for c in slow_bodies if c.closed_after is not None]
        print(
            describe(
                case="slowloris+slow-body",
                lorises=lorises,
                bodies=bodies,
                still_open_heads=len(open_heads),
                still_open_bodies=len(open_bodies),
                head_close_max_s=max(head_times, default=-1.0),
                body_close_max_s=max(body_times, default=-1.0),
                elapsed_s=time.monotonic() - started,
                get_max_s=max(latencies, default=-1.0),
                peak_growth_mib=server.grown(rss.peak),
            )
        )
    assert not open_heads, f"{len(open_heads)} slowloris connections still open"
    assert max(head_times) <= HEADER_TIMEOUT + MARGIN
    assert not open_bodies, f"{len(open_bodies)} slow bodies still open"
    assert max(body_times) <= BODY_TIMEOUT + MARGIN
    assert latencies and max(latencies) < 5
    assert server.grown(rss.peak) <= HTTP_RSS_BOUND_MIB
    server.assert_up()
    lines = server.log_since(mark)
    assert not [line for line in lines if "Traceback" in line]
    assert len(lines) <= lorises + bodies + 20


def test_unfinished_huge_headers_are_cut_off_at_the_cap_with_bounded_rss(
    todo_server: AbuseServer, soak: bool
) -> None:
    server = todo_server
    bombs = 4
    budget = scaled(soak, 16, 64) * MIB  # per connection, never finished
    chunk = b"a" * 65536
    mark = server.log_mark()
    sent = [0] * bombs
    with RssSampler(server.probe) as rss:
        socks = []
        for _ in range(bombs):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            sock.sendall(b"GET /todo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bomb: ")
            sock.settimeout(0.5)
            socks.append(sock)
        try:
            started = time.monotonic()
            cut: list[float | None] = [None] * bombs
            while time.monotonic() - started < 30 and any(c is None for c in cut):
                for n, sock in enumerate(socks):
                    if cut[n] is not None or sent[n] >= budget:
                        continue
                    try:
                        sock.sendall(chunk)
                        sent[n] += len(chunk)
                    except TimeoutError:
                        if not connection_held(server.port, sock.getsockname()[1]):
                            cut[n] = time.monotonic() - started
                    except OSError:
                        cut[n] = time.monotonic() - started
                if all(sent[n] >= budget or cut[n] is not None for n in range(bombs)):
                    break
            time.sleep(1)  # whatever the server still buffers is in RSS now
            held = [connection_held(server.port, s.getsockname()[1]) for s in socks]
        finally:
            for sock in socks:
                sock.close()
    print(
        describe(
            case="header-bomb",
            bombs=bombs,
            accepted_mib=max(sent) / MIB,
            still_held=sum(held),
            peak_growth_mib=server.grown(rss.peak),
        )
    )
    # Closed at the cap: the kernel's buffers take a few MiB more before a send fails.
    assert not any(held), "a header bomb is still being read"
    assert max(sent) <= 8 * MIB
    assert server.grown(rss.peak) <= HTTP_RSS_BOUND_MIB
    server.assert_up()
    lines = server.log_since(mark)
    assert not [line for line in lines if "Traceback" in line]
    assert len(lines) <= bombs + 20


def test_a_complete_request_with_headers_over_the_cap_gets_431_or_a_close(
    todo_server: AbuseServer,
) -> None:
    server = todo_server
    header = b"X-Big: " + b"b" * (MAX_HEADER_BYTES + 1024) + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /todo HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
    print(describe(case="header-over-cap", answer=answer[:40]))
    assert answer == b"" or answer.split(b" ", 2)[1] in (b"431", b"400"), answer[:200]
    server.assert_up()


def test_an_idle_keep_alive_connection_is_closed(todo_server: AbuseServer) -> None:
    server = todo_server
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /todo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        started = time.monotonic()
        sock.settimeout(KEEP_ALIVE_TIMEOUT + MARGIN)
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(65536):
                pass
        idle = time.monotonic() - started
    print(describe(case="keep-alive", closed_after_s=idle))
    assert idle <= KEEP_ALIVE_TIMEOUT + MARGIN


@contextlib.contextmanager
def _fd_limit(soft: int) -> Iterator[None]:
    """Lower this process's soft RLIMIT_NOFILE while a server is spawned (it inherits it)."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def test_idle_half_sent_requests_beyond_the_fd_limit_do_not_lock_out_a_normal_get(
    abuse_server: Callable[..., AbuseServer],
) -> None:
    fds_now = len(os.listdir("/proc/self/fd"))
    if fds_now > 200:
        pytest.skip(f"this test process already holds {fds_now} fds")
    with _fd_limit(256):
        server = abuse_server()
    mark = server.log_mark()
    with _closing(_open(server.port, b"GET /todo HTTP/1.1\r\nHost: 127.0.0.1\r\n", 300)):
        started = time.monotonic()
        answered_after: float | None = None
        statuses = []
        while time.monotonic() - started < HEADER_TIMEOUT + MARGIN:
            try:
                response = httpx2.get(server.url + "/todo", timeout=2)
            except httpx2.TransportError as exc:
                statuses.append(type(exc).__name__)
                continue
            statuses.append(str(response.status_code))
            if response.status_code == 200:
                answered_after = time.monotonic() - started
                break
            time.sleep(0.2)
        print(
            describe(
                case="fd-limit",
                answered_after_s=answered_after,
                attempts=len(statuses),
                first=statuses[:3],
            )
        )
    assert answered_after is not None, f"no normal GET answered 200: {statuses[-5:]}"
    server.assert_up()
    lines = server.log_since(mark)
    assert not [line for line in lines if "Traceback" in line]
    assert len(lines) <= 50
