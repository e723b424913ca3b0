"""The layers stay visible: no import cycle in src/, and each layer imports only those below it
(protocol <- streams/queues/state <- steps <- events <- server <- workbench/cli)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in (SRC / "surge").rglob("*.py"):
        if "templates" in path.parts:
            continue
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("surge"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("surge"))
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere_in_src() -> None:
    assert _cycles(_imports()) == []


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("surge.protocol", ("surge.streams", "surge.steps", "surge.server", "surge.workbench")),
        ("surge.streams", ("surge.server", "surge.workbench", "surge.events", "surge.cli")),
        ("surge.queues", ("surge.server", "surge.workbench", "surge.steps", "surge.streams")),
        ("surge.events", ("surge.server", "surge.workbench", "surge.cli")),
        ("surge.server", ("surge.workbench", "surge.cli")),
    ],
)
def test_a_layer_imports_nothing_from_the_layers_above(
    layer: str, forbidden: tuple[str, ...]
) -> None:
    offending = [
        (module, dep)
        for module, deps in _imports().items()
        if module == layer or module.startswith(layer + ".")
        for dep in deps
        if dep.startswith(forbidden)
    ]
    assert offending == []


def test_a_production_app_loads_no_workbench_code(tmp_path: Path) -> None:
    (tmp_path / "steps").mkdir()
    script = (
        "import sys, surge\n"
        f"app = surge.create_app({str(tmp_path)!r}, adapter=surge.MemoryStreamAdapter())\n"
        "print(sorted(m for m in sys.modules if m.startswith('surge.workbench')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
    assert app_has_no_plugin_routes(tmp_path)


def app_has_no_plugin_routes(project: Path) -> bool:
    import surge
    from surge.streams.stores.memory import MemoryStreamAdapter

    app = surge.create_app(project, adapter=MemoryStreamAdapter())
    ext = app.runtime.extensions
    return not (ext.routes or ext.upgrade_gates or ext.response_hooks or ext.value_observers)
