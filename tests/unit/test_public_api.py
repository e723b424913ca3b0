"""``import surge`` is light, and every public name still resolves (lazily, PEP 562)."""

from __future__ import annotations

import subprocess
import sys

import surge


def test_every_name_in_all_resolves() -> None:
    for name in surge.__all__:
        assert getattr(surge, name) is not None, name
    for adapter in ("FileStreamAdapter", "MemoryStreamAdapter", "RedisStreamAdapter"):
        assert getattr(surge, adapter).__name__ == adapter


def test_importing_surge_or_its_cli_entry_loads_no_framework() -> None:
    code = (
        "import sys, surge, surge.cli.main, surge.cli.spawn, surge.cli.master\n"
        "heavy = sorted(m for m in ('pydantic', 'uvicorn', 'starlette', 'surge.server', "
        "'surge.streams', 'typer') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
