"""Each store against a dict model: a hypothesis state machine drives random writes and reads.

``seq`` is compared per (stream, group), the scope in which the contract orders changes. Updates
are random op lists (some invalid for the item, some with a right or a stale ``if_version``); the
model applies them with ``surge.streams.ops.apply_ops`` (its semantics have their own tests), so
what is checked here is each store's atomic read-modify-write, storage round trip and versions.
TTL: items set with a long TTL must behave as any other; ``expire`` sets a tiny TTL and waits for
the store's one ``delete``. History: the feed itself is the model of each group's history;
``send`` interleaves events with the changes, and ``resume`` checks that ``read_history`` from any
earlier position returns exactly what was fed after it (the default policy keeps all of a run).
Deltas: every update of an existing item carries ops that rebuild it from the old one. Windows:
``page_through`` pages back from the newest with a random limit and must rebuild the group.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from surge.errors import ConflictError, ValidationError
from surge.streams.adapter import StreamAdapter
from surge.streams.feed import Change, EphemeralEvent, FeedMessage
from surge.streams.ops import apply_ops, check_ops

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
paths = st.sampled_from(["n", "content", "tags", "a.b", "a", ""])
numbers = st.integers(min_value=-1000, max_value=1000) | st.floats(-1e6, 1e6, allow_nan=False)
ops_strategy = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("set"), "path": paths, "value": json_values}),
        st.fixed_dictionaries(
            {"type": st.just("merge"), "path": paths, "value": st.dictionaries(text, json_values)}
        ),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["increment", "decrement"]), "path": paths, "by": numbers}
        ),
        st.fixed_dictionaries(
            {"type": st.just("append"), "path": paths, "value": text | json_values}
        ),
        st.fixed_dictionaries({"type": st.just("remove"), "path": paths}),
    ),
    min_size=1,
    max_size=3,
)

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
        self.versions: dict[tuple[str, str, str], int] = {}

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

    @rule(stream=streams, group=groups, id=ids, item=items, has_ttl=st.booleans())
    def set(self, stream: str, group: str, id: str, item: dict[str, Any], has_ttl: bool) -> None:
        ttl = 3600.0 if has_ttl else None  # never expires during the run
        change = self.run(self.adapter.set(stream, group, id, item, ttl=ttl))
        expected = {**item, "id": id}
        model_group = self.model.setdefault((stream, group), {})
        assert change.kind == ("update" if id in model_group else "create")
        assert change.item == expected
        model_group[id] = expected
        self._check_change(change)
        self.versions[(stream, group, id)] = change.seq

    @rule(
        stream=streams,
        group=groups,
        id=ids,
        ops=ops_strategy,
        guard=st.sampled_from(["none", "right", "stale", "absent"]),
    )
    def update(
        self, stream: str, group: str, id: str, ops: list[dict[str, Any]], guard: str
    ) -> None:
        model_group = self.model.setdefault((stream, group), {})
        current = model_group.get(id)
        version = self.versions.get((stream, group, id)) if current is not None else None
        if_version = {
            "none": None,
            "right": version if version is not None else 0,
            "stale": (version or 0) + 1,
            "absent": 0,
        }[guard]
        # The order the stores check in: the ops' shape, then the version, then the item.
        expected: dict[str, Any] | None = None
        conflict = invalid = False
        try:
            checked = check_ops(ops)
        except ValidationError:
            invalid = True
        else:
            conflict = if_version is not None and if_version != (version or 0)
            if not conflict:
                try:
                    expected = apply_ops(orjson.loads(orjson.dumps(current or {})), checked, id)
                    orjson.dumps(expected)
                except (ValidationError, TypeError):
                    invalid = True
        fed = len(self.feed)
        coro = self.adapter.update(stream, group, id, ops, if_version=if_version)
        if conflict or invalid:
            with pytest.raises(ValidationError if invalid else ConflictError):
                self.run(coro)
            self.run(settle_feed(self.adapter, self.feed))
            assert len(self.feed) == fed
            return
        updated = self.run(coro)
        assert updated.old == current
        assert updated.change.kind == ("update" if current is not None else "create")
        assert updated.change.item == expected
        assert expected is not None
        # Deltas: an update of an existing item carries ops that rebuild it from the old one.
        if current is None:
            assert updated.change.ops is None
        else:
            assert updated.change.ops is not None
            old_copy = orjson.loads(orjson.dumps(current))
            assert apply_ops(old_copy, updated.change.ops, id) == expected
        model_group[id] = expected
        self._check_change(updated.change)
        self.versions[(stream, group, id)] = updated.change.seq

    @rule(stream=streams, group=groups, id=ids)
    def expire(self, stream: str, group: str, id: str) -> None:
        model_group = self.model.get((stream, group), {})
        if id not in model_group:
            return
        change = self.run(
            self.adapter.update(stream, group, id, [{"type": "remove", "path": "x"}], ttl=0.01)
        )
        self._check_change(change.change)

        def deleted() -> bool:
            return any(
                isinstance(m, Change)
                and m.kind == "delete"
                and m.seq > change.change.seq
                and (m.stream, m.group, m.id) == (stream, group, id)
                for m in self.feed
            )

        self.run(wait_for_feed_within(self.adapter, deleted))
        [gone] = [
            m
            for m in self.feed
            if isinstance(m, Change)
            and m.seq > change.change.seq
            and (m.stream, m.group) == (stream, group)
        ]
        assert gone.kind == "delete" and gone.item == change.change.item
        self.last_seq[(stream, group)] = gone.seq
        del model_group[id]
        self.versions.pop((stream, group, id), None)

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
        self.versions.pop((stream, group, id), None)

    @rule(stream=streams, group=groups, id=st.none() | ids, n=st.integers(0, 9))
    def send(self, stream: str, group: str, id: str | None, n: int) -> None:
        event = {"type": "tick", "data": {"n": n}}
        self.run(self.adapter.send(stream, group, id, event))
        self.run(settle_feed(self.adapter, self.feed))
        sent = self.feed[-1]
        assert isinstance(sent, EphemeralEvent)
        assert (sent.stream, sent.group, sent.id, sent.event) == (stream, group, id, event)
        assert sent.seq > self.last_seq.get((stream, group), 0)
        self.last_seq[(stream, group)] = sent.seq

    @rule(stream=streams, group=groups, back=st.integers(0, 40))
    def resume(self, stream: str, group: str, back: int) -> None:
        self.run(settle_feed(self.adapter, self.feed))
        fed = [
            m
            for m in self.feed
            if isinstance(m, Change | EphemeralEvent) and (m.stream, m.group) == (stream, group)
        ]
        since = 0 if back >= len(fed) else fed[len(fed) - 1 - back].seq
        history = self.run(self.adapter.read_history(stream, group, since))
        assert history is not None
        expected = [m for m in fed if m.seq > since]
        assert history.messages == expected
        assert [m.seq for m in history.messages] == [m.seq for m in expected]
        assert history.seq >= self.last_seq.get((stream, group), 0)

    @rule(stream=streams, group=groups, id=ids)
    def get(self, stream: str, group: str, id: str) -> None:
        got = self.run(self.adapter.get(stream, group, id))
        assert got == self.model.get((stream, group), {}).get(id)

    @rule(stream=streams, group=groups)
    def get_group(self, stream: str, group: str) -> None:
        snapshot = self.run(self.adapter.get_group(stream, group))
        assert snapshot.items == list(self.model.get((stream, group), {}).values())
        assert snapshot.seq >= self.last_seq.get((stream, group), 0)

    @rule(stream=streams, group=groups, limit=st.integers(1, 4))
    def page_through(self, stream: str, group: str, limit: int) -> None:
        """Windowed reads: pages of ``limit`` from the newest back rebuild the whole group."""
        expected = list(self.model.get((stream, group), {}).values())
        snapshot = self.run(self.adapter.get_group(stream, group, limit=limit))
        pages = [snapshot.items]
        while snapshot.more is not None:
            assert len(snapshot.items) == limit
            snapshot = self.run(
                self.adapter.get_group(stream, group, limit=limit, before=snapshot.more)
            )
            pages.append(snapshot.items)
        assert [item for page in reversed(pages) for item in page] == expected
        assert len(pages) == max(1, -(-len(expected) // limit))

    @rule(stream=streams)
    def list_groups(self, stream: str) -> None:
        got = self.run(self.adapter.list_groups(stream))
        assert got == sorted(g for (s, g), group in self.model.items() if s == stream and group)

    @invariant()
    def every_change_was_fed(self) -> None:
        messages = [m for m in self.feed if isinstance(m, Change | EphemeralEvent)]
        for key in {(m.stream, m.group) for m in messages}:
            seqs = [m.seq for m in messages if (m.stream, m.group) == key]
            assert seqs == sorted(set(seqs))


async def wait_for_feed_within(
    adapter: StreamAdapter, condition: Any, within: float = 10.0
) -> None:
    """Poll ``condition`` for up to ``within`` s (an expiry needs the sweeper, on every store)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"no expiry within {within} s")
        await asyncio.sleep(0.005)


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
