"""What clients can make the server write: tokens never, tracebacks never, one line at most.

Issue 9 items 6, 8 and 9: tokens are redacted by meaning (``?auth%54oken=``), hostile path ids
are 400s naming the problem, and invalid UTF-8, refused upgrades and broken transports cost at
most about one log line per connection, never a traceback.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import unquote

import pytest

from . import logscan
from .conftest import AbuseServer, describe
from .harness import RawWebSocket, build_frame, join_message

pytestmark = [pytest.mark.timeout(120)]

# Sessions the test adds to its copy of examples/chat (one valid, one refused with 401).
ENCODED_TOKEN = "abuse-encoded-token-5d1e"
BAD_TOKEN = "abuse-refused-token-9c4b"


def _leaks(lines: list[str], *tokens: str) -> list[str]:
    return [line for line in lines if any(t in line or t in unquote(line) for t in tokens)]


def test_tokens_in_any_encoding_authenticate_and_never_reach_the_log_even_at_debug(
    abuse_server: Callable[..., AbuseServer],
) -> None:
    for token in (ENCODED_TOKEN, BAD_TOKEN):
        logscan.register_token(token, pending=True)
    server = abuse_server(
        "chat", extra_args=("--log-level", "debug"), extra_sessions={ENCODED_TOKEN: "alice"}
    )
    mark = server.log_mark()
    encoded = ENCODED_TOKEN.replace("-", "%2D")
    accepted = [
        ("/?auth%54oken=" + ENCODED_TOKEN, ()),
        ("/?authToken=" + encoded, ()),
        ("/?%61uth%54oken=%61" + encoded[1:], ()),
        ("/chat?x=1&authToken=" + ENCODED_TOKEN, ()),
        ("/", (("Sec-WebSocket-Protocol", "Authorization," + ENCODED_TOKEN),)),
        ("/", (("Sec-WebSocket-Protocol", "Authorization, " + ENCODED_TOKEN),)),
    ]
    for path, headers in accepted:
        peer = RawWebSocket(server.port, path=path, headers=headers)
        try:
            peer.send_text(join_message("project-a", "s1", stream="chatMessage"))
            answer = peer.recv_json()
            assert answer["event"]["type"] == "sync", (path, headers, answer)  # authenticated
        finally:
            peer.close()
    for path in ("/?auth%54oken=" + BAD_TOKEN, "/?authToken=" + BAD_TOKEN.replace("-", "%2d")):
        refused = RawWebSocket(server.port, path=path, expect_status=None)
        assert refused.status == 401, path
        refused.close()
    time.sleep(0.5)  # the last lines reach the file
    lines = server.log_since(mark)
    leaks = _leaks(lines, ENCODED_TOKEN, BAD_TOKEN)
    print(describe(case="encoded-token", lines=len(lines), leaking_lines=len(leaks)))
    assert len(lines) >= len(accepted), "nothing was logged: the scan would be vacuous"
    assert not leaks, "\n".join(leaks[:10])


HOSTILE_IDS = [
    "%00",
    "%01",
    "%1b[31m",
    "%7f",
    "%c2%80",
    "a%0d%0ab",
    "%0d%0aX-Injected:%201",
    "a" * 300,
]


def test_hostile_path_ids_get_a_400_naming_the_problem_and_no_traceback(
    todo_server: AbuseServer,
) -> None:
    server = todo_server
    mark = server.log_mark()
    answers = []
    for method in ("PUT", "DELETE"):
        for todo_id in HOSTILE_IDS:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(
                    f"{method} /todo/{todo_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\nContent-Length: 2\r\n"
                    "Connection: close\r\n\r\n{}".encode()
                )
                raw = b""
                while chunk := sock.recv(65536):
                    raw += chunk
            head, _, body = raw.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1]) if head else 0
            answers.append((method, todo_id[:20], status, body[:200]))
    time.sleep(0.3)
    lines = server.log_since(mark)
    statuses = [status for _, _, status, _ in answers]
    print(describe(case="hostile-ids", statuses=statuses, lines=len(lines)))
    assert all(status == 400 for status in statuses), answers
    assert all(b"id" in body.lower() for _, _, _, body in answers), answers
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line], lines[:20]
    server.assert_up()


def _lines_per_normal_connection(server: AbuseServer, count: int = 10) -> float:
    mark = server.log_mark()
    for n in range(count):
        peer = RawWebSocket(server.port)
        peer.send_text(join_message("project-b", f"n{n}", stream="announcement"))
        peer.recv_json()
        peer.close()
    time.sleep(0.5)
    return len(server.log_since(mark)) / count


def test_invalid_utf8_refused_upgrades_and_broken_transports_log_one_line_each_at_most(
    abuse_server: Callable[..., AbuseServer],
) -> None:
    server = abuse_server("chat")
    normal = _lines_per_normal_connection(server)
    mark = server.log_mark()
    per_kind = 40
    for _ in range(per_kind):  # invalid UTF-8 in a text frame: the server closes with 1007
        peer = RawWebSocket(server.port)
        peer.send(build_frame(0x1, b'{"type":"join","data":"\xff\xfe\xc3\x28"}'))
        try:
            while True:
                opcode, _ = peer.recv_frame(within=5)
                if opcode == 0x8:
                    break
        except (ConnectionError, TimeoutError, OSError):
            pass
        peer.close()
    for _ in range(per_kind):  # refused upgrades (unknown token: 401)
        refused = RawWebSocket(server.port, path="/?authToken=nobody", expect_status=None)
        assert refused.status == 401
        refused.close()
    for _ in range(per_kind):  # transport errors: half a frame, then a reset
        peer = RawWebSocket(server.port)
        peer.send(build_frame(0x1, b'{"type":"join"}' * 100)[:40])
        peer.reset()
    time.sleep(1.0)
    lines = server.log_since(mark)
    tracebacks = [line for line in lines if "Traceback" in line]
    connections = 3 * per_kind
    print(
        describe(
            case="log-flood",
            connections=connections,
            lines=len(lines),
            lines_per_normal_connection=normal,
            tracebacks=len(tracebacks),
        )
    )
    assert not tracebacks
    assert not [line for line in lines if "Fatal error on transport" in line]
    assert len(lines) <= (normal + 1) * connections + 10
    server.assert_up()
