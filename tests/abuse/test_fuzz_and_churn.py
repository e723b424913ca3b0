"""Hypothesis-fuzzed frames and connection churn: the server stays up, others are unaffected.

Issue 9 item 7. Fuzzing: arbitrary opcodes, flags, masks and payloads (JSON-shaped or not) on
fresh connections, a bounded number of examples; a good subscriber must get every change in
order throughout. Churn: a few hundred connect/join/close cycles (graceful, FIN, RST) must leave
no descriptor behind and RSS near the baseline.
"""

from __future__ import annotations

import contextlib
import json
import time

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import AbuseServer, describe, scaled
from .harness import RawWebSocket, RssSampler, build_frame, good_subscriber, join_message

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# Documented bound: fuzzing or churning from one client at a time may raise RSS by at most this.
RSS_BOUND_MIB = 32

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["join", "leave", "nope", ""]) | st.text(max_size=5)},
    optional={
        "data": st.fixed_dictionaries(
            {},
            optional={
                "streamName": st.sampled_from(["todo", "nope", ""]) | _json_values,
                "groupId": st.sampled_from(["inbox", "x" * 300, "\x00", ""]) | _json_values,
                "id": st.text(max_size=30) | _json_values,
                "subscriptionId": st.text(max_size=30) | _json_values,
            },
        )
        | _json_values
    },
).map(lambda m: json.dumps(m).encode())
_payloads = _messages | st.binary(max_size=300) | st.text(max_size=200).map(str.encode)
_frames = st.tuples(
    st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB, 0xF]),
    st.booleans(),  # fin
    st.sampled_from([0, 0, 0, 1, 4, 7]),  # rsv bits
    st.sampled_from([True, True, True, False]),  # masked
    _payloads,
)


def _drain(peer: RawWebSocket, within: float) -> None:
    with contextlib.suppress(OSError, TimeoutError, ConnectionError, ValueError):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            opcode, _ = peer.recv_frame(within=max(0.01, deadline - time.monotonic()))
            if opcode == 0x8:
                return


def test_fuzzed_frames_leave_the_server_up_and_a_good_subscriber_intact(
    todo_server: AbuseServer, soak: bool
) -> None:
    server = todo_server
    examples = scaled(soak, 500, 5000)
    ids: list[str] = []
    count = 0
    cpu_start = server.probe.cpu_seconds()
    with (
        good_subscriber(server.ws_url) as good,
        RssSampler(server.probe) as rss,
        httpx2.Client(base_url=server.url, timeout=10) as http,
    ):

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(frames=st.lists(_frames, min_size=1, max_size=4), reset=st.booleans())
        def attack(frames: list[tuple[int, bool, int, bool, bytes]], reset: bool) -> None:
            nonlocal count
            count += 1
            peer = RawWebSocket(server.port)
            try:
                for opcode, fin, rsv, masked, payload in frames:
                    if opcode >= 0x8:
                        payload = payload[:125]
                    with contextlib.suppress(OSError):
                        peer.send(build_frame(opcode, payload, fin=fin, mask=masked, rsv=rsv))
                _drain(peer, 0.05)
            finally:
                peer.reset() if reset else peer.close()
            if count % 25 == 0:  # a change mid-fuzz: the good subscriber must get it in order
                response = http.post("/todo", json={"description": f"during fuzz {count}"})
                assert response.status_code == 200
                ids.append(response.json()["id"])

        started = time.monotonic()
        attack()
        fuzzed_for = time.monotonic() - started
        response = http.post("/todo", json={"description": "after the fuzz"})
        assert response.status_code == 200
        ids.append(response.json()["id"])
        good.wait_created(ids, within=20)
        good.check_in_order(ids)
    busy_for, cpu_after = server.probe.wait_idle(within=30)
    print(
        describe(
            case="fuzz",
            examples=count,
            fuzz_s=fuzzed_for,
            cpu_s=server.probe.cpu_seconds() - cpu_start,
            busy_after_s=busy_for,
            cpu_after_s=cpu_after,
            peak_growth_mib=server.grown(rss.peak),
        )
    )
    assert count >= examples // 2, "hypothesis ran too few examples"
    assert server.grown(rss.peak) <= RSS_BOUND_MIB
    assert busy_for <= 10
    server.assert_up()


def test_connection_churn_leaks_no_descriptor_and_rss_returns_near_baseline(
    todo_server: AbuseServer, soak: bool
) -> None:
    server = todo_server
    cycles = scaled(soak, 300, 5000)
    mark = server.log_mark()
    with good_subscriber(server.ws_url) as good, RssSampler(server.probe) as rss:
        fds_with_good = server.probe.fd_count()
        started = time.monotonic()
        for n in range(cycles):
            peer = RawWebSocket(server.port)
            item = {"id": f"item-{n}"} if n % 3 == 0 else {}
            peer.send_text(join_message("inbox", f"churn-{n}", **item))
            assert peer.recv_json()["event"]["type"] == "sync"
            if n % 3 == 0:
                peer.send(build_frame(0x8, b"\x03\xe8bye"))
                _drain(peer, 1.0)
                peer.close()
            elif n % 3 == 1:
                peer.close()
            else:
                peer.reset()
        churned_for = time.monotonic() - started
        with httpx2.Client(base_url=server.url, timeout=10) as http:
            response = http.post("/todo", json={"description": "after the churn"})
        assert response.status_code == 200
        good.wait_created([response.json()["id"]], within=15)
        good.check_in_order([response.json()["id"]])
        deadline = time.monotonic() + 15
        while server.probe.fd_count() > fds_with_good + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        fds_after = server.probe.fd_count()
    time.sleep(0.5)
    after = server.grown(server.probe.rss())
    print(
        describe(
            case="churn",
            cycles=cycles,
            churn_s=churned_for,
            fds_before=fds_with_good,
            fds_after=fds_after,
            peak_growth_mib=server.grown(rss.peak),
            after_growth_mib=after,
        )
    )
    assert fds_after <= fds_with_good + 2, "descriptors leaked"
    assert server.grown(rss.peak) <= RSS_BOUND_MIB
    assert after <= RSS_BOUND_MIB
    server.assert_up()
    lines = server.log_since(mark)
    assert not [line for line in lines if "Traceback" in line]
    assert len(lines) <= 3 * cycles + 20
