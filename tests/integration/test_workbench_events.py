"""The Workbench's background-work endpoints against a live server (issue 11 item 8).

Flows describe the app's topics, emitters, subscribers and cron ticks; a failing event step's
message is seen going retried -> dead, shows in the dead letters, and Replay brings it back to
done; Discard removes one; the step logs filter by trace id and step and keep secrets out; the
POSTs are refused from other sites and foreign hosts; nothing of this exists without the
Workbench.
"""

from __future__ import annotations

import logging
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from e2e.redis_env import redis_env  # noqa: F401 - fixture
from surge import ApiRequest, ApiResponse, ApiRouteConfig, Config, FlowContext, create_app
from surge.config import EventSettings
from surge.events.observers import DeliveryEvent
from surge.server.app import SurgeApp
from surge.testing import LiveServer, live_server
from surge.workbench.activity import DeliveryLog

from .streamclient import wait_until

pytestmark = pytest.mark.timeout(60)

API = "/__surge/api"
WITHIN = 20.0  # generous: other suites keep both cores busy


@dataclass
class Flaky:
    """The failing step's switch: it raises until ``ok`` is set (and records each call)."""

    ok: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)


def build_app(flaky: Flaky, *, workbench: bool = True) -> SurgeApp:
    async def start(req: ApiRequest, ctx: FlowContext) -> ApiResponse:
        await ctx.emit({"topic": "job.requested", "data": {"size": 1}})
        return ApiResponse(202, {"traceId": ctx.trace_id})

    async def run_job(input: Any, ctx: FlowContext) -> None:
        ctx.logger.info("running job", {"size": input["size"]})
        await ctx.emit({"topic": "job.finished", "data": {"size": input["size"]}})

    async def on_finished(input: Any, ctx: FlowContext) -> None:
        ctx.logger.info("job finished")

    async def flaky_handler(input: Any, ctx: FlowContext) -> None:
        flaky.calls.append(input)
        ctx.logger.warning("flaky attempt")
        if not flaky.ok:
            raise RuntimeError("not yet")

    async def tick(ctx: FlowContext) -> None:
        await ctx.emit({"topic": "job.requested", "data": {"size": 2}})

    return create_app(
        config=Config(events=EventSettings(retry_delay=0.05, max_retry_delay=0.2)),
        steps=[
            (
                ApiRouteConfig(
                    name="StartJob",
                    method="POST",
                    path="/jobs",
                    emits=["job.requested"],
                    flows=["jobs"],
                ),
                start,
            ),
            (
                {
                    "type": "event",
                    "name": "RunJob",
                    "subscribes": ["job.requested"],
                    "emits": ["job.finished"],
                    "flows": ["jobs"],
                },
                run_job,
            ),
            (
                {"type": "event", "name": "OnFinished", "subscribes": ["job.finished"]},
                on_finished,
            ),
            (
                {
                    "type": "event",
                    "name": "Flaky",
                    "subscribes": ["flaky"],
                    "infrastructure": {"queue": {"maxRetries": 1}},
                },
                flaky_handler,
            ),
            (
                {
                    "type": "cron",
                    "name": "NewYear",
                    "cron": "0 0 1 1 *",
                    "emits": ["job.requested"],
                    "flows": ["jobs"],
                },
                tick,
            ),
        ],
        workbench=workbench,
    )


@pytest.fixture
def flaky() -> Flaky:
    return Flaky()


@pytest.fixture
async def served(flaky: Flaky) -> AsyncIterator[tuple[LiveServer, httpx2.AsyncClient]]:
    app = build_app(flaky)
    async with live_server(app) as server, httpx2.AsyncClient(base_url=server.url) as client:
        yield server, client


async def get_json(client: httpx2.AsyncClient, path: str, **params: str) -> Any:
    response = await client.get(f"{API}/{path}", params=params, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


async def emit(client: httpx2.AsyncClient, topic: str, data: Any) -> dict[str, Any]:
    response = await client.post(f"{API}/emit", json={"topic": topic, "data": data}, timeout=5)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def message(client: httpx2.AsyncClient, step: str, message_id: str) -> dict[str, Any]:
    rows = (await get_json(client, "messages", step=step))["messages"]
    found = [row for row in rows if row["messageId"] == message_id]
    assert len(found) == 1, rows
    row: dict[str, Any] = found[0]
    return row


async def wait_status(
    client: httpx2.AsyncClient, step: str, message_id: str, status: str
) -> dict[str, Any]:
    seen: list[str] = []

    async def reached() -> bool:
        row = await message(client, step, message_id)
        seen.append(row["status"])
        return bool(row["status"] == status)

    try:
        await wait_until(reached, within=WITHIN)
    except AssertionError:
        raise AssertionError(f"{step}/{message_id} never {status}: {seen[-5:]}") from None
    return await message(client, step, message_id)


async def test_flows_describe_topics_emitters_subscribers_and_cron_ticks(
    served: tuple[LiveServer, httpx2.AsyncClient],
) -> None:
    _, client = served
    before = time.time()
    flows = await get_json(client, "flows")

    steps = {s["name"]: s for s in flows["steps"]}
    assert [s["name"] for s in flows["steps"]] == [
        "StartJob",
        "Flaky",
        "OnFinished",
        "RunJob",
        "NewYear",
    ]
    assert steps["StartJob"]["type"] == "api" and steps["StartJob"]["path"] == "/jobs"
    assert steps["RunJob"]["subscribes"] == ["job.requested"]
    assert steps["RunJob"]["emits"] == ["job.finished"]
    assert steps["Flaky"]["maxRetries"] == 1
    cron = steps["NewYear"]
    assert cron["type"] == "cron" and cron["cron"] == "0 0 1 1 *"
    assert cron["nextTick"] > before
    tick = time.localtime(cron["nextTick"])
    assert (tick.tm_mon, tick.tm_mday, tick.tm_hour, tick.tm_min) == (1, 1, 0, 0)

    topics = {t["topic"]: t for t in flows["topics"]}
    assert topics["job.requested"] == {
        "topic": "job.requested",
        "emitters": ["StartJob", "NewYear"],
        "subscribers": ["RunJob"],
        "isUnsubscribed": False,
        "isUnemitted": False,
    }
    assert topics["job.finished"]["emitters"] == ["RunJob"]
    assert topics["job.finished"]["subscribers"] == ["OnFinished"]
    assert topics["flaky"]["isUnemitted"] is True  # only the Workbench or `surge emit` send it
    assert flows["flows"] == {"jobs": ["StartJob", "RunJob", "NewYear"]}


async def test_a_chain_shows_each_message_queued_then_done_with_queue_counts(
    served: tuple[LiveServer, httpx2.AsyncClient],
) -> None:
    server, client = served
    started = await client.post("/jobs", json={}, timeout=5)
    assert started.status_code == 202
    trace_id = started.json()["traceId"]
    await server.app.wait_idle(WITHIN)

    rows = (await get_json(client, "messages", trace=trace_id))["messages"]
    by_step = {row["step"]: row for row in rows}
    assert set(by_step) == {"RunJob", "OnFinished"}  # the whole chain, under one trace id
    for row in rows:
        assert row["status"] == "done" and row["attempt"] == 1 and row["error"] is None
        assert [e["kind"] for e in row["history"]] == ["published", "started", "done"]
    assert by_step["RunJob"]["topic"] == "job.requested"
    assert by_step["OnFinished"]["topic"] == "job.finished"
    # Most recently changed first: the chain's last message leads.
    assert rows[0]["step"] == "OnFinished"

    queues = (await get_json(client, "messages"))["queues"]
    assert set(queues) == {"RunJob", "OnFinished", "Flaky"}
    assert queues["RunJob"] == {"ready": 0, "delayed": 0, "inFlight": 0, "dead": 0}


async def test_a_failing_message_goes_retried_then_dead_and_replay_brings_it_to_done(
    served: tuple[LiveServer, httpx2.AsyncClient], flaky: Flaky
) -> None:
    server, client = served
    sent = await emit(client, "flaky", {"n": 1})
    (message_id,) = sent["messageIds"]

    dead = await wait_status(client, "Flaky", message_id, "dead")
    kinds = [e["kind"] for e in dead["history"]]
    assert kinds == ["published", "started", "retried", "started", "dead"]
    assert dead["attempt"] == 2 and dead["error"] == "RuntimeError: not yet"
    assert dead["traceId"] == sent["traceId"]
    retried = dead["history"][2]
    assert retried["error"] == "RuntimeError: not yet" and retried["delay"] > 0

    letters = (await get_json(client, "dead-letters"))["deadLetters"]
    assert [(d["step"], d["messageId"]) for d in letters] == [("Flaky", message_id)]
    (letter,) = letters
    assert letter["data"] == {"n": 1} and letter["topic"] == "flaky"
    assert letter["attempts"] == 2 and letter["error"] == "RuntimeError: not yet"
    assert letter["traceId"] == sent["traceId"]
    queues = (await get_json(client, "messages"))["queues"]
    assert queues["Flaky"]["dead"] == 1

    flaky.ok = True  # the handler succeeds the next time
    replayed = await client.post(
        f"{API}/dead-letters/replay", json={"step": "Flaky", "messageId": message_id}, timeout=5
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"step": "Flaky", "messageId": message_id, "replayed": True}

    done = await wait_status(client, "Flaky", message_id, "done")
    assert [e["kind"] for e in done["history"]][-3:] == ["replayed", "started", "done"]
    assert done["attempt"] == 1  # attempts reset by the replay
    assert flaky.calls == [{"n": 1}] * 3
    await server.app.wait_idle(WITHIN)
    assert (await get_json(client, "dead-letters"))["deadLetters"] == []

    again = await client.post(
        f"{API}/dead-letters/replay", json={"step": "Flaky", "messageId": message_id}, timeout=5
    )
    assert again.status_code == 404


async def test_discard_removes_a_dead_letter_for_good(
    served: tuple[LiveServer, httpx2.AsyncClient], flaky: Flaky
) -> None:
    server, client = served
    (message_id,) = (await emit(client, "flaky", {"n": 2}))["messageIds"]
    await wait_status(client, "Flaky", message_id, "dead")

    discarded = await client.post(
        f"{API}/dead-letters/discard", json={"step": "Flaky", "messageId": message_id}, timeout=5
    )
    assert discarded.status_code == 200, discarded.text
    assert discarded.json()["discarded"] is True
    assert (await get_json(client, "dead-letters"))["deadLetters"] == []
    row = await message(client, "Flaky", message_id)
    assert row["status"] == "discarded"
    assert (await get_json(client, "messages"))["queues"]["Flaky"]["dead"] == 0
    await server.app.wait_idle(WITHIN)
    assert len(flaky.calls) == 2  # never delivered again

    gone = await client.post(
        f"{API}/dead-letters/discard", json={"step": "Flaky", "messageId": message_id}, timeout=5
    )
    assert gone.status_code == 404


async def test_logs_filter_by_trace_id_and_step_and_keep_secrets_out(
    served: tuple[LiveServer, httpx2.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="surge.step")
    server, client = served
    first = (await client.post("/jobs", json={}, timeout=5)).json()["traceId"]
    second = (await client.post("/jobs", json={}, timeout=5)).json()["traceId"]
    await server.app.wait_idle(WITHIN)

    lines = (await get_json(client, "logs", trace=first))["logs"]
    assert [(line["step"], line["message"]) for line in lines] == [
        ("RunJob", "running job"),
        ("OnFinished", "job finished"),
    ]
    assert lines[0]["data"] == '{"size":1}' and lines[0]["level"] == "INFO"
    assert all(line["traceId"] == first for line in lines)
    assert lines[0]["at"] <= lines[1]["at"] and lines[0]["seq"] < lines[1]["seq"]

    by_step = (await get_json(client, "logs", step="OnFinished"))["logs"]
    assert {line["traceId"] for line in by_step} == {first, second}
    both = (await get_json(client, "logs", step="RunJob", trace=second))["logs"]
    assert [line["message"] for line in both] == ["running job"]

    # A secret in a step's line is redacted as in every server log (surge.server.logs).
    secret = "wb-logs-secret-7f3a"
    logging.getLogger("surge.step.RunJob").info(
        "calling %s [trace %s]", f"https://api.example/v1?authToken={secret}&q=1", "t-secret"
    )
    (line,) = (await get_json(client, "logs", trace="t-secret"))["logs"]
    assert secret not in line["message"] and "authToken=[redacted]&q=1" in line["message"]


async def test_posts_from_other_sites_or_foreign_hosts_are_refused(
    served: tuple[LiveServer, httpx2.AsyncClient], flaky: Flaky
) -> None:
    _, client = served
    (message_id,) = (await emit(client, "flaky", {"n": 3}))["messageIds"]
    await wait_status(client, "Flaky", message_id, "dead")
    body = {"step": "Flaky", "messageId": message_id}
    for action in ("replay", "discard"):
        url = f"{API}/dead-letters/{action}"
        cross = await client.post(url, json=body, headers={"origin": "https://evil.example"})
        assert cross.status_code == 403, cross.text
        site = await client.post(url, json=body, headers={"sec-fetch-site": "cross-site"})
        assert site.status_code == 403
        rebound = await client.post(url, json=body, headers={"host": "evil.example:3000"})
        assert rebound.status_code == 403
        form = await client.post(url, content=b"{}", headers={"content-type": "text/plain"})
        assert form.status_code == 415
        wrong = await client.get(url)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    bad = await client.post(f"{API}/dead-letters/replay", json={"step": "Flaky"})
    assert bad.status_code == 400
    # Reading is for this machine's host names too (DNS rebinding).
    for path in ("flows", "messages", "dead-letters", "logs"):
        foreign = await client.get(f"{API}/{path}", headers={"host": "evil.example"})
        assert foreign.status_code == 403, path
    # Nothing was replayed or discarded by the refused requests.
    letters = (await get_json(client, "dead-letters"))["deadLetters"]
    assert [d["messageId"] for d in letters] == [message_id]
    assert len(flaky.calls) == 2


async def test_without_the_workbench_nothing_is_served_or_observed(flaky: Flaky) -> None:
    app = build_app(flaky, workbench=False)
    assert app.background.observers == []
    async with live_server(app) as server, httpx2.AsyncClient(base_url=server.url) as client:
        for path in ("flows", "messages", "dead-letters", "logs"):
            assert (await client.get(f"{API}/{path}")).status_code == 404
        replay = await client.post(f"{API}/dead-letters/replay", json={"step": "Flaky"})
        assert replay.status_code in (404, 405)


FLAKY_STEP = """
    config = {
        "type": "event", "name": "Flaky", "subscribes": ["flaky"], "emits": [],
        "infrastructure": {"queue": {"maxRetries": 0}},
    }

    async def handler(input, ctx):
        # Fails the first time a trace comes by, succeeds when replayed.
        if await ctx.state.get("flaky", ctx.trace_id) is None:
            await ctx.state.set("flaky", ctx.trace_id, "failed once")
            raise RuntimeError("first attempt fails")
"""


@pytest.fixture(params=["file", "redis"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("SURGE_STORE", raising=False)
    if request.param == "redis":
        request.getfixturevalue("redis_env")
    else:
        monkeypatch.delenv("SURGE_REDIS_URL", raising=False)
    yield request.param


async def test_dead_letter_replay_and_discard_on_the_project_store(
    tmp_path: Path, store: str
) -> None:
    root = tmp_path / "app"
    (root / "steps").mkdir(parents=True)
    (root / "steps" / "flaky_step.py").write_text(textwrap.dedent(FLAKY_STEP))
    app = create_app(root, workbench=True)
    assert app.background.queue.is_distributed == (store == "redis")
    async with live_server(app) as server, httpx2.AsyncClient(base_url=server.url) as client:
        (replayed_id,) = (await emit(client, "flaky", {"n": 1}))["messageIds"]
        (discarded_id,) = (await emit(client, "flaky", {"n": 2}))["messageIds"]
        await wait_status(client, "Flaky", replayed_id, "dead")
        await wait_status(client, "Flaky", discarded_id, "dead")
        letters = (await get_json(client, "dead-letters"))["deadLetters"]
        assert {d["messageId"] for d in letters} == {replayed_id, discarded_id}

        for action, message_id in (("replay", replayed_id), ("discard", discarded_id)):
            response = await client.post(
                f"{API}/dead-letters/{action}",
                json={"step": "Flaky", "messageId": message_id},
                timeout=5,
            )
            assert response.status_code == 200, response.text
        done = await wait_status(client, "Flaky", replayed_id, "done")
        assert [e["kind"] for e in done["history"]][-3:] == ["replayed", "started", "done"]
        assert (await message(client, "Flaky", discarded_id))["status"] == "discarded"
        await server.app.wait_idle(WITHIN)
        assert (await get_json(client, "dead-letters"))["deadLetters"] == []
        counts = (await get_json(client, "messages"))["queues"]["Flaky"]
        assert counts == {"ready": 0, "delayed": 0, "inFlight": 0, "dead": 0}


def test_the_delivery_ring_buffer_keeps_only_the_newest_events() -> None:
    log = DeliveryLog(capacity=5)
    for n in range(8):
        log.observe(DeliveryEvent("published", "S", "t", f"m{n}", "tr"))
    assert [e["messageId"] for e in log.events()] == ["m3", "m4", "m5", "m6", "m7"]
    assert [row["messageId"] for row in log.messages(limit=2)] == ["m7", "m6"]
    assert log.last_seq == 8
