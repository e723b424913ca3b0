"""Access control's pure parts: reading ``exp``, matching ``where``, the bounded expiry heap."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel

from surge import Config, ValidationError
from surge.protocol.session import Action, Session
from surge.server.access_control import AccessControl, _matcher, expiry_of
from surge.steps.registry import Registry
from surge.streams.stores.memory import MemoryStreamAdapter

_ids = itertools.count(1)


class Claims(BaseModel):
    userId: str
    exp: float | None = None


def test_exp_is_read_from_a_dict_or_a_model_and_may_be_absent() -> None:
    assert expiry_of({"userId": "u", "exp": 1700000000}) == 1700000000.0
    assert expiry_of(Claims(userId="u", exp=12.5)) == 12.5
    assert expiry_of(Claims(userId="u")) is None
    assert expiry_of({"userId": "u"}) is None
    assert expiry_of(None) is None
    assert expiry_of("a plain string context") is None


@pytest.mark.parametrize("bad", ["1700000000", True, float("nan"), [1]])
def test_an_exp_that_is_not_a_number_is_a_validation_error(bad: object) -> None:
    with pytest.raises(ValidationError, match="epoch seconds"):
        expiry_of({"exp": bad})


def test_where_matches_every_field_given_on_dicts_and_objects_never_anonymous() -> None:
    match = _matcher({"userId": "u1", "plan": "pro"})
    assert match({"userId": "u1", "plan": "pro", "other": 1})
    assert not match({"userId": "u1", "plan": "free"})
    assert not match({"userId": "u1"})  # a missing field is no match
    assert match(type("Ctx", (), {"userId": "u1", "plan": "pro"})())
    assert not match(None)
    assert _matcher(None)(None)  # None: everyone, anonymous included
    assert _matcher(lambda ctx: ctx == "x")("x")


def test_a_predicate_that_raises_matches_nothing() -> None:
    def broken(context: Any) -> bool:
        raise KeyError("userId")

    assert not _matcher(broken)({"userId": "u1"})


@dataclass
class FakeConnection:
    auth_context: Any
    id: int = field(default_factory=lambda: next(_ids))
    session: Session = field(default_factory=Session)
    is_gone: bool = False

    def __hash__(self) -> int:
        return self.id


@dataclass
class FakeRuntime:
    adapter: MemoryStreamAdapter = field(default_factory=MemoryStreamAdapter)
    config: Config = field(default_factory=Config)
    registry: Registry = field(default_factory=lambda: Registry.build([], []))


async def perform(actions: list[Action]) -> None:
    return None


def test_the_expiry_heap_stays_within_twice_the_live_expiring_connections() -> None:
    access = AccessControl(FakeRuntime())  # type: ignore[arg-type]
    far = time.time() + 3600
    live = [FakeConnection({"exp": far}) for _ in range(10)]
    for conn in live:
        access.attach(conn, perform)  # type: ignore[arg-type]
    for _ in range(5000):  # churn: connections with an expiry come and go
        conn = FakeConnection({"exp": far})
        access.attach(conn, perform)  # type: ignore[arg-type]
        access.detach(conn)  # type: ignore[arg-type]
    assert access.expiring == 10
    assert len(access._heap) <= max(1024 + 1, 2 * access.expiring)


def test_connections_without_exp_cost_no_heap_entry() -> None:
    access = AccessControl(FakeRuntime())  # type: ignore[arg-type]
    for _ in range(100):
        access.attach(FakeConnection({"userId": "u"}), perform)  # type: ignore[arg-type]
    assert access.expiring == 0
    assert access._heap == []
