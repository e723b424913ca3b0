"""Shared test helpers for every suite."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def require_component(ok: object, reason: str) -> None:
    """Skip the test when a needed component (node, npm, a service) is missing.

    Under ``CI=true`` a missing component is a failure instead: CI must run everything.
    """
    if ok:
        return
    _missing(reason)


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)


# The private redis-server fixture, for every suite that restarts Redis under test.
pytest_plugins = ["redis_server"]
