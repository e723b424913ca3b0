"""Load examples/ai-chat's step-side modules (``steps.sse``, ``steps.chat_model``) for tests.

They import each other as ``steps.*``, the package Surge's discovery installs for a project. They
are loaded here as that package, then ``sys.modules`` is put back as it was, so the tests that
discover other projects later see no trace of them.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["AI_CHAT", "load"]

AI_CHAT = Path(__file__).resolve().parents[1] / "examples" / "ai-chat"


def load(*names: str) -> tuple[ModuleType, ...]:
    """``load("sse", "chat_model")`` -> the modules ``steps.sse``, ``steps.chat_model``."""
    saved = {n: m for n, m in sys.modules.items() if n == "steps" or n.startswith("steps.")}
    for name in saved:
        del sys.modules[name]
    spec = ModuleSpec("steps", None, is_package=True)
    spec.submodule_search_locations = [str(AI_CHAT / "steps")]
    sys.modules["steps"] = importlib.util.module_from_spec(spec)
    try:
        return tuple(importlib.import_module(f"steps.{name}") for name in names)
    finally:
        for name in [n for n in sys.modules if n == "steps" or n.startswith("steps.")]:
            del sys.modules[name]
        sys.modules.update(saved)
