"""Each store against a dict model: a hypothesis state machine drives random writes and reads.

``seq`` is compared per (stream, group), the scope in which the contract orders changes.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from surge.streams.adapter import StreamAdapter
from surge.streams.feed import Change, FeedMessage

from .conftest import ADAPTER_FACTORIES, settle_feed, wait_until_fed

T = TypeVar("T")

# Few keys so that updates, deletes of existing items and re-creates happen often.
streams = st.sampled_from(["s1", "s2"])
groups = st.sampled_from(["g1", "g2", "ünï"])
ids = st.sampled_from(["a", "b", "c", "d", "🎉"])
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8,
)
items = st.dictionaries(text, json_values, max_size=4)

Model = dict[tuple[str, str], dict[str, dict[str, Any]]]


class StoreMachine(RuleBasedStateMachine):
    """Compares one adapter with a dict of groups whose insertion order is the creation order."""

    adapter_name = ""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="surge-model-"))
        try:
            # First: the factory may skip the test (redis without a server).
            self.adapter: StreamAdapter = ADAPTER_FACTORIES[self.adapter_name](self.directory)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        # Hypothesis drives the machine synchronously: one private loop per run.
        self.loop = asyncio.new_event_loop()
        self.feed: list[FeedMessage] = []
        self.run(self.adapter.open(self.feed.append))
        self.model: Model = {}
        self.last_seq: dict[tuple[str, str], int] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.adapter.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    def _check_change(self, change: Change) -> None:
        key = (change.stream, change.group)
        assert change.seq > self.last_seq.get(key, 0)
        self.last_seq[key] = change.seq
        self.run(wait_until_fed(self.adapter, self.feed, change))
        assert self.feed[-1] == change

    @rule(stream=streams, group=groups, id=ids, item=items)
    def set(self, stream: str, group: str, id: str, item: dict[str, Any]) -> None:
        change = self.run(self.adapter.set(stream, group, id, item))
        expected = {**item, "id": id}
        model_group = self.model.setdefault((stream, group), {})
        assert change.kind == ("update" if id in model_group else "create")
        assert change.item == expected
        model_group[id] = expected
        self._check_change(change)

    @rule(stream=streams, group=groups, id=ids)
    def delete(self, stream: str, group: str, id: str) -> None:
        fed = len(self.feed)
        change = self.run(self.adapter.delete(stream, group, id))
        model_group = self.model.get((stream, group), {})
        if id not in model_group:
            assert change is None
            self.run(settle_feed(self.adapter, self.feed))
            assert len(self.feed) == fed
            return
        assert change is not None
        assert change.kind == "delete"
        assert change.item == model_group.pop(id)
        self._check_change(change)

    @rule(stream=streams, group=groups, id=ids)
    def get(self, stream: str, group: str, id: str) -> None:
        got = self.run(self.adapter.get(stream, group, id))
        assert got == self.model.get((stream, group), {}).get(id)

    @rule(stream=streams, group=groups)
    def get_group(self, stream: str, group: str) -> None:
        snapshot = self.run(self.adapter.get_group(stream, group))
        assert snapshot.items == list(self.model.get((stream, group), {}).values())
        assert snapshot.seq >= self.last_seq.get((stream, group), 0)

    @rule(stream=streams)
    def list_groups(self, stream: str) -> None:
        got = self.run(self.adapter.list_groups(stream))
        assert got == sorted(g for (s, g), group in self.model.items() if s == stream and group)

    @invariant()
    def every_change_was_fed(self) -> None:
        for key in {(m.stream, m.group) for m in self.feed if isinstance(m, Change)}:
            seqs = [
                m.seq for m in self.feed if isinstance(m, Change) and (m.stream, m.group) == key
            ]
            assert seqs == sorted(set(seqs))


@pytest.mark.parametrize("name", list(ADAPTER_FACTORIES))
def test_store_matches_the_dict_model(name: str) -> None:
    machine = cast(
        type[StoreMachine],
        type(f"{name.title()}StoreMachine", (StoreMachine,), {"adapter_name": name}),
    )
    machine.TestCase.settings = settings(
        max_examples=30,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()
