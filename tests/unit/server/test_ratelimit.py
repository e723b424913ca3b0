"""Token buckets, the per-connection limiter's verdicts and the bounded per-IP table."""

from __future__ import annotations

import pytest

from surge import Config, ConfigError, Limits
from surge.server.ratelimit import (
    RATE_LIMIT_STRIKE_WINDOW,
    ConnectionLimiter,
    TokenBucket,
    UpgradeLimiter,
    Verdict,
)

JOIN = '{"type":"join","data":{"streamName":"todo","groupId":"g","subscriptionId":"s"}}'


def test_bucket_allows_the_burst_at_once_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.wait_for() == pytest.approx(0.1)
    assert not bucket.take(0.05)
    assert bucket.take(0.1)
    # An idle bucket fills up to its burst, never beyond.
    assert sum(bucket.take(100.0) for _ in range(10)) == 5


def test_bucket_takes_amounts_for_bytes() -> None:
    bucket = TokenBucket(rate=100, burst=1000, now=0.0)
    assert bucket.take(0.0, 900)
    assert not bucket.take(0.0, 200)
    assert bucket.take(1.0, 200)


def limiter(**limits: object) -> ConnectionLimiter:
    made = ConnectionLimiter.for_limits(Limits(**limits), 0.0)  # type: ignore[arg-type]
    assert made is not None
    return made


def test_frames_over_the_limit_warn_once_drop_then_close_after_the_strikes() -> None:
    conn = limiter(frames_per_second=1, frame_burst=3, rate_limit_strikes=4)
    verdicts = [conn.frame(JOIN, 0.0) for _ in range(3 + 5)]
    assert verdicts == [Verdict.OK] * 3 + [Verdict.WARN] + [Verdict.DROP] * 3 + [Verdict.CLOSE]
    assert conn.kind == "frames"
    assert "1 frames per second" in conn.what


def test_strikes_are_forgotten_after_a_quiet_window() -> None:
    conn = limiter(frames_per_second=1, frame_burst=1, rate_limit_strikes=2)
    assert conn.frame(JOIN, 0.0) is Verdict.OK
    assert conn.frame(JOIN, 0.0) is Verdict.WARN
    assert conn.frame(JOIN, 0.0) is Verdict.DROP
    later = RATE_LIMIT_STRIKE_WINDOW + 1
    assert conn.frame(JOIN, later) is Verdict.OK
    # A new run starts with a warning again, not with the close.
    assert conn.frame(JOIN, later) is Verdict.WARN


def test_bytes_count_utf8_bytes_not_characters() -> None:
    conn = limiter(
        bytes_in_per_second=1, bytes_in_burst=64 * 1024, frames_per_second=None
    )  # the burst must hold one max_frame_bytes frame
    wide = "é" * (20 * 1024)  # 40 KiB of UTF-8 in 20 Ki characters
    assert conn.frame(wide, 0.0) is Verdict.OK
    assert conn.frame(wide, 0.0) is Verdict.WARN
    assert conn.kind == "bytes"


def test_joins_have_their_own_bucket() -> None:
    conn = limiter(joins_per_second=1, join_burst=2)
    assert [conn.join(0.0) for _ in range(3)] == [Verdict.OK, Verdict.OK, Verdict.WARN]
    assert conn.kind == "joins"
    assert conn.frame(JOIN, 0.0) is Verdict.OK  # frames are still fine


def test_defaults_let_a_reconnect_rejoin_every_subscription_at_once() -> None:
    limits = Limits()
    conn = limiter()
    joins = limits.max_subscriptions
    assert all(conn.frame(JOIN, 0.0) is Verdict.OK for _ in range(joins))
    assert all(conn.join(0.0) is Verdict.OK for _ in range(joins))


def test_no_limiter_when_every_connection_limit_is_off() -> None:
    off = Limits(frames_per_second=None, joins_per_second=None, bytes_in_per_second=None)
    assert ConnectionLimiter.for_limits(off, 0.0) is None
    assert UpgradeLimiter.for_limits(Limits(connects_per_ip_per_second=None)) is None


def test_upgrade_limiter_limits_each_address_on_its_own() -> None:
    ips = UpgradeLimiter(rate=1, burst=2, max_tracked=100, exempt=())
    assert [ips.check("10.0.0.1", 0.0) for _ in range(2)] == [None, None]
    wait = ips.check("10.0.0.1", 0.0)
    assert wait == pytest.approx(1.0)
    assert ips.check("10.0.0.2", 0.0) is None
    assert ips.check("10.0.0.1", 1.0) is None


def test_upgrade_limiter_table_is_bounded_and_forgets_the_least_recent() -> None:
    ips = UpgradeLimiter(rate=1, burst=1, max_tracked=3, exempt=())
    for n in range(1000):
        ips.check(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(ips) == 3
    ips = UpgradeLimiter(rate=1, burst=1, max_tracked=2, exempt=())
    ips.check("a", 0.0)
    ips.check("b", 0.0)
    assert ips.check("a", 0.0) is not None  # seen again: the most recent now
    ips.check("c", 0.0)  # evicts b, not a
    assert ips.check("a", 0.0) is not None
    assert ips.check("b", 0.0) is None  # forgotten: a fresh bucket


def test_loopback_is_exempt_by_default() -> None:
    ips = UpgradeLimiter.for_limits(Limits(connect_burst_per_ip=1))
    assert ips is not None
    assert all(ips.check("127.0.0.1", 0.0) is None for _ in range(10))
    assert all(ips.check("::1", 0.0) is None for _ in range(10))
    assert ips.check("192.0.2.7", 0.0) is None
    assert ips.check("192.0.2.7", 0.0) is not None
    assert ips.check(None, 0.0) is None  # no address known (a unix socket): nothing to count


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frames_per_second", 0),
        ("joins_per_second", -1),
        ("frame_burst", 0),
        ("rate_limit_strikes", 0),
        ("bytes_in_burst", 1024),  # below max_frame_bytes
        ("connect_limit_exempt", ["not a network"]),
        ("connect_limit_exempt", "127.0.0.1"),
    ],
)
def test_invalid_rate_limits_are_config_errors_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        Config(limits=Limits(**{field: value}))  # type: ignore[arg-type]
