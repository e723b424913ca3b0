"""``surge start``'s early bind: reading --host/--port before the CLI parses them."""

from __future__ import annotations

import socket

import pytest

from surge.cli import spawn


@pytest.mark.parametrize(
    ("args", "address"),
    [
        ([], ("0.0.0.0", 3000)),
        (["--port", "8000"], ("0.0.0.0", 8000)),
        (["-p", "8000", "--host", "127.0.0.1"], ("127.0.0.1", 8000)),
        (["--port=0", "--host=::1", "--workers", "2"], ("::1", 0)),
        (["--dir", "app", "--log-level", "debug"], ("0.0.0.0", 3000)),
    ],
)
def test_the_address_is_read_from_plain_options(args: list[str], address: tuple[str, int]) -> None:
    assert spawn._address(args) == address


@pytest.mark.parametrize("args", [["--port"], ["--port", "eighty"], ["-p=x"]])
def test_an_address_it_cannot_read_is_left_to_the_cli(args: list[str]) -> None:
    assert spawn._address(args) is None


def test_the_early_socket_is_taken_once_and_only_for_its_address() -> None:
    sock = spawn.bind_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    spawn._early_socket = ("127.0.0.1", port, sock)
    assert spawn.take_early_socket("127.0.0.1", port) is sock
    assert spawn.take_early_socket("127.0.0.1", port) is None
    sock.close()

    other = spawn.bind_listener("127.0.0.1", 0)
    spawn._early_socket = ("127.0.0.1", other.getsockname()[1], other)
    assert spawn.take_early_socket("127.0.0.1", 1) is None
    assert other.fileno() == -1  # closed: the CLI binds the address it was asked for


def test_a_bound_listener_accepts_connections_before_anyone_calls_accept() -> None:
    sock = spawn.bind_listener("127.0.0.1", 0)
    try:
        client = socket.create_connection(sock.getsockname(), timeout=5)
        client.close()  # the kernel completed the handshake: the backlog holds it
    finally:
        sock.close()
