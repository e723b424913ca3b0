"""DNS rebinding against ``surge dev``: the Workbench key only for loopback Host headers.

Issue 9 item 7 of "what failed" (item 4 of "what to build"). A page on ``evil.example`` whose
name is rebound to 127.0.0.1 sends ``Host: evil.example:PORT`` with a matching ``Origin`` and
``Sec-Fetch-Site: same-origin``: it must get neither the key nor a Workbench connection.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest

from . import logscan
from .conftest import AbuseServer, describe
from .harness import RawWebSocket, join_message

pytestmark = [pytest.mark.timeout(120)]


def _session(port: int, headers: dict[str, str]) -> tuple[int, bytes]:
    lines = ["GET /__surge/api/session HTTP/1.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_the_workbench_key_goes_only_to_loopback_hosts_and_rebinding_shapes_are_refused(
    abuse_server: Callable[..., AbuseServer],
) -> None:
    server = abuse_server(command="dev")
    port = server.port
    status, body = _session(port, {"Host": f"127.0.0.1:{port}"})
    assert status == 200, body
    key = json.loads(body)["workbenchKey"]
    logscan.register_token(key)  # the whole-suite scan: the key never reaches a log line
    mark = server.log_mark()
    loopback = [f"localhost:{port}", "localhost", f"127.1.2.3:{port}", f"[::1]:{port}"]
    for host in loopback:
        status, body = _session(port, {"Host": host})
        assert status == 200 and json.loads(body)["workbenchKey"] == key, (host, status)
    hostile = [
        {
            "Host": f"evil.example:{port}",
            "Origin": f"http://evil.example:{port}",
            "Sec-Fetch-Site": "same-origin",
        },
        {"Host": f"evil.example:{port}"},
        {"Host": f"localhost.evil.example:{port}", "Sec-Fetch-Site": "none"},
        {"Host": f"127.0.0.1.nip.io:{port}", "Origin": f"http://127.0.0.1.nip.io:{port}"},
        {"Host": f"[::ffff:7f00:1].evil:{port}"},
    ]
    answers = []
    for headers in hostile:
        status, body = _session(port, headers)
        answers.append((headers["Host"], status))
        assert key.encode() not in body, headers
    # The upgrade with the key is checked the same way.
    good = RawWebSocket(port, path=f"/?surgeWorkbench={key}")
    good.send_text(join_message("inbox", "wb"))
    assert good.recv_json()["event"]["type"] == "sync"
    good.close()
    rebound = RawWebSocket(
        port,
        path=f"/?surgeWorkbench={key}",
        host=f"evil.example:{port}",
        headers=[("Origin", f"http://evil.example:{port}")],
        expect_status=None,
    )
    rebound.close()
    print(describe(case="rebinding", session=answers, upgrade=rebound.status))
    assert all(status == 403 for _, status in answers), answers
    assert rebound.status in (401, 403), rebound.status
    lines = server.log_since(mark)
    assert not [line for line in lines if key in line]
    assert not [line for line in lines if "Traceback" in line]
    server.assert_up()
