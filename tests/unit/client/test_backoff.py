"""Reconnect delays: exponential, capped, jittered downwards."""

from __future__ import annotations

import random

import pytest

from surge.client import Backoff


def test_base_delay_doubles_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.5, max_delay=4.0)
    assert [backoff.base(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.base(10_000) == 4.0  # no float overflow after a long outage


def test_jittered_delay_stays_within_the_band() -> None:
    backoff = Backoff(initial=1.0, max_delay=8.0, jitter=0.5)
    rng = random.Random(1)
    delays = [backoff.delay(3, rng) for _ in range(500)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert max(delays) - min(delays) > 2.0  # actually spread out


def test_no_jitter_is_exact() -> None:
    assert Backoff(initial=0.2, jitter=0.0).delay(1) == 0.4


@pytest.mark.parametrize(
    "kwargs", [{"initial": -1}, {"initial": 5, "max_delay": 1}, {"factor": 0.5}, {"jitter": 2}]
)
def test_invalid_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
