"""Motia's npm Node client across a `surge reload`: it sees a 1012 close, its single retry 2 s later
lands on the new worker, and it resyncs what changed meanwhile (issue 13 item 5)."""

from __future__ import annotations

import subprocess

from compat.test_stream_client_node import NodeFactory, call, create_todo, ids
from e2e.surge_process import SURGE, SurgeProcess


def test_the_node_client_rides_through_a_reload_and_resyncs(
    todo_server: SurgeProcess, node_client: NodeFactory
) -> None:
    kept = create_todo(todo_server, "kept")
    client = node_client(todo_server.ws_url)
    client.subscribe_group("g", "todo", "inbox")
    client.wait_state("g", lambda s: len(s) == 1)
    before = todo_server.worker_pids()

    mark = client.mark()
    result = subprocess.run(
        [SURGE, "reload", "--port", str(todo_server.port)],
        cwd=todo_server.project_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert todo_server.worker_pids() != before
    close = client.wait_for(
        lambda m: m["type"] == "socket" and m["state"] == "close", since=mark, what="the close"
    )
    assert close["code"] == 1012
    added = create_todo(todo_server, "added while the client was away")
    completed = call(todo_server, "PUT", f"/todo/{kept['id']}", {"completed": True})

    client.wait_for(
        lambda m: m["type"] == "socket" and m["state"] == "open",
        timeout=10,
        since=mark,
        what="the client's own reconnect",
    )
    state = client.wait_state("g", lambda s: ids(s) == [kept["id"], added["id"]], timeout=10)
    assert state == [completed, added]
    assert client.errors() == []
