"""Surge's TypeScript client (clients/js) from the Python suite, so `make test` (CI) runs it.

- its own unit tests (node's test runner, against an in-test WebSocket server that speaks
  docs/protocol.md), and
- the deltas contract: the client's ``applyOps`` gives exactly what the server's
  ``surge.streams.ops.apply_ops`` gives (the same item, or an error at the same op), on hand-picked
  and on a few thousand generated cases, so a ``patch`` applied in the browser leaves the copy
  equal to the stored item.

Needs node and the package's npm deps (``make test`` installs them: ``npm ci`` in clients/js);
without them the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import require_component
from surge.errors import ValidationError
from surge.streams.ops import apply_ops, check_ops

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js"
TSC = CLIENT / "node_modules" / "typescript" / "bin" / "tsc"
OPS_CLI = CLIENT / "build-test" / "test" / "ops-cli.js"


@pytest.fixture(scope="module")
def built_client_tests() -> Path:
    """clients/js's sources and tests compiled to build-test/ (tsc), once per module."""
    node = shutil.which("node")
    require_component(node, "node is not installed (the TypeScript client needs it)")
    require_component(
        TSC.is_file(), "clients/js has no node_modules: run `make test` (or npm ci in clients/js)"
    )
    built = subprocess.run(
        [str(node), str(TSC), "-p", "tsconfig.test.json"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, f"tsc failed:\n{built.stdout}\n{built.stderr}"
    return CLIENT / "build-test" / "test"


def test_the_client_unit_tests_pass(built_client_tests: Path) -> None:
    files = sorted(str(path) for path in built_client_tests.glob("*.test.js"))
    assert len(files) >= 3, files
    run = subprocess.run(
        ["node", "--test", "--test-reporter=tap", *files],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"node --test failed:\n{run.stdout[-20000:]}\n{run.stderr[-5000:]}"
    assert "# fail 0" in run.stdout, run.stdout[-5000:]


# --- the deltas contract: client applyOps == server apply_ops --------------------------------

HAND_PICKED: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = [
    ({"id": "x"}, [{"type": "set", "path": "a.b.c", "value": 1}]),
    ({"id": "x", "a": 1}, [{"type": "set", "path": "a.b", "value": 1}]),
    ({"id": "x", "a": None}, [{"type": "set", "path": "a.b", "value": 1}]),
    ({"id": "x", "a": None}, [{"type": "merge", "path": "a", "value": {"k": 1}}]),
    ({"id": "x", "a": None}, [{"type": "increment", "path": "a"}]),
    ({"id": "x", "a": None}, [{"type": "append", "path": "a", "value": "s"}]),
    ({"id": "x", "a": True}, [{"type": "increment", "path": "a"}]),
    ({"id": "x", "n": 1}, [{"type": "increment", "path": "n", "by": 0.5}]),
    ({"id": "x", "n": 1}, [{"type": "decrement", "path": "n", "by": -2}]),
    ({"id": "x"}, [{"type": "append", "path": "l", "value": [1]}]),
    ({"id": "x", "l": []}, [{"type": "append", "path": "l", "value": {"a": 1}}]),
    ({"id": "x", "s": "a"}, [{"type": "append", "path": "s", "value": 1}]),
    ({"id": "x", "s": "a"}, [{"type": "remove", "path": "s.t"}]),
    ({"id": "x"}, [{"type": "remove", "path": "a.b"}]),
    ({"id": "x", "a": {"b": 1}}, [{"type": "remove", "path": "a.b"}]),
    ({"id": "x", "a": 1}, [{"type": "merge", "path": "", "value": {"b": 2, "id": "y"}}]),
    ({"id": "x", "a": 1}, [{"type": "set", "path": "", "value": {"b": 2}}]),
    (None, [{"type": "set", "path": "a", "value": 1}]),
    (None, [{"type": "increment", "path": "n"}]),
    ({"id": "x"}, [{"type": "set", "path": "id", "value": "other"}]),
    ({"id": "x"}, [{"type": "set", "path": "a", "value": {"d": [1]}}, {"type": "append", "path": "a.d", "value": 2}]),
    ({"id": "x"}, [{"type": "set", "path": "a", "value": 1}, {"type": "increment", "path": "a.b"}]),
    ({"id": "x", "m": {"a": 1, "b": {"c": 1}}}, [{"type": "merge", "path": "m", "value": {"b": {"d": 2}}}]),
    ({"id": "x", "m": [1]}, [{"type": "merge", "path": "m", "value": {"b": 1}}]),
]  # fmt: skip

PATHS = ["a", "b", "a.b", "a.c", "b.a", "a.b.c", "l", "s", "n", "id"]
SCALARS: list[Any] = [None, True, False, 0, 1, -3, 2.5, "", "x", "yz"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.2:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 2))]
    if depth < 2 and roll < 0.4:
        return {rng.choice("abcs"): _value(rng, depth + 1) for _ in range(rng.randint(0, 2))}
    return rng.choice(SCALARS)


def _op(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["set", "merge", "increment", "decrement", "append", "remove"])
    path = rng.choice([*PATHS, ""]) if kind in ("set", "merge") else rng.choice(PATHS)
    op: dict[str, Any] = {"type": kind, "path": path}
    if kind in ("set", "append"):
        op["value"] = _value(rng)
    elif kind == "merge" or (kind == "set" and path == ""):
        op["value"] = {rng.choice("abns"): _value(rng, 1) for _ in range(rng.randint(0, 2))}
    if kind == "set" and path == "":
        op["value"] = {rng.choice("abns"): _value(rng, 1) for _ in range(rng.randint(0, 2))}
    if kind in ("increment", "decrement") and rng.random() < 0.7:
        op["by"] = rng.choice([1, 2, -1, 0.5, 10])
    return op


def _generated(count: int, seed: int) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    rng = random.Random(seed)
    cases: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = []
    while len(cases) < count:
        item: dict[str, Any] | None = None
        if rng.random() < 0.9:
            item = {"id": "x"}
            for _ in range(rng.randint(0, 4)):
                item[rng.choice("abcdlns")] = _value(rng)
        ops = [_op(rng) for _ in range(rng.randint(1, 4))]
        try:
            check_ops(ops)  # the server sends only ops that passed this
        except ValidationError:
            continue
        cases.append((item, ops))
    return cases


def _server_result(item: dict[str, Any] | None, ops: list[dict[str, Any]]) -> dict[str, Any]:
    copy = None if item is None else json.loads(json.dumps(item))
    try:
        return {"item": apply_ops(copy, check_ops(ops), "x")}
    except ValidationError as exc:
        return {"error": exc.errors[0]["loc"][1]}


def _same(a: Any, b: Any) -> bool:
    """JSON equality where true is not 1 and 1 equals 1.0 (JSON has one number type)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_client_apply_ops_matches_the_server_on_every_case(built_client_tests: Path) -> None:
    cases = HAND_PICKED + _generated(3000, seed=13)
    payload = [{"item": item, "ops": ops, "id": "x"} for item, ops in cases]
    run = subprocess.run(
        ["node", str(OPS_CLI)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    client_results = json.loads(run.stdout)
    assert len(client_results) == len(cases)
    outcomes = {"item": 0, "error": 0}
    for (item, ops), client in zip(cases, client_results, strict=True):
        server = _server_result(item, ops)
        assert _same(client, server), (
            f"item={item!r} ops={ops!r}: client {client!r}, server {server!r}"
        )
        outcomes[next(iter(server))] += 1
    # The generated cases exercise both outcomes, not only one.
    assert outcomes["item"] > 500 and outcomes["error"] > 100, outcomes
