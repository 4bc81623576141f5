"""A whole-cluster swap (issue 21, item 3; what a KubeRay zero-downtime upgrade does): a second cluster started
against the same database takes the work over, each piece once, and the old cluster's leftovers cannot write
after the takeover. Two platforms, each on a Ray instance of its own (tests/multinode/local_cluster.py), one
Postgres database:

- one after the other: cluster A is lost (every process killed) with a run mid-step, a run and a free-standing
  request waiting on approvals, a hosted agent busy with a task and tasks queued behind it; cluster B, started
  on the database, finishes each of them once;
- with an overlap: cluster C starts while B runs a run and its agent a task. The agent moves to C at once (C's
  reconciler activates it; the task B's process was running fails as interrupted, as on a node's loss). B stops
  answering (SIGSTOP) mid-step; C takes the run over when its lease runs out; B wakes (SIGCONT) while C runs
  and is refused every write: its run's step, its agent's late outcome, and the tasks B's router sends to its
  superseded agent actor (C's actor runs them). Then B is lost.

What is checked is read from the database and the API: each run's steps recorded once per node and each effect
applied once, each task started and ended once (its events), each approval decided once; a step or task
outcome written after a takeover is the new cluster's (the process that ran it). Skips without Postgres.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import POSTGRES_ENV
from tests.multinode import harness, local_cluster
from tests.multinode.harness import eventually, ok
from tests.platform_fixtures import Platform, _postgres_database

pytestmark = pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV),
    reason=f"the cluster-swap tests need Postgres (two clusters share one database): {POSTGRES_ENV} (CI sets it)",
)

STEP_S = 6.0  # the effect steps' sleep: the window in which a cluster is lost or paused
LIMIT_S = 90.0


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    databases = _postgres_database(os.environ[POSTGRES_ENV])
    yield next(databases)
    databases.close()


@pytest.fixture(scope="module")
def clusters(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Platform]]:
    """The module's clusters by name, started by the tests; any still running are stopped at the end."""
    started: dict[str, Platform] = {}
    yield started
    for platform in started.values():
        local_cluster.kill(platform)


def _client(platform: Platform) -> httpx.Client:
    return httpx.Client(base_url=platform.base_url, timeout=30)


def _agent(http: httpx.Client, owner: dict[str, str], max_tasks: int) -> str:
    agent = ok(
        http.post(
            "/api/v1/agents",
            headers=owner,
            json={
                "name": f"swap-{secrets.token_hex(3)}",
                "max_concurrent_tasks": max_tasks,
                "configuration": {"handler": "tests.fixtures.handlers:sleep_whoami"},
            },
        )
    )
    ok(http.post(f"/api/v1/agents/{agent['id']}/deploy", headers=owner))
    return agent["id"]


def _task(http: httpx.Client, owner: dict[str, str], agent_id: str, seconds: float, until: Path | None = None) -> str:
    """A task for the agent: it sleeps `seconds`, or until the file `until` exists (at most `seconds`)."""
    payload: dict[str, Any] = {"seconds": seconds, **({"until": str(until)} if until else {})}
    body = {"agentId": agent_id, "payload": payload, "priority": "P2"}
    return ok(http.post("/api/v1/tasks", headers=owner, json=body))["id"]


def _routed(http: httpx.Client, owner: dict[str, str]) -> str:
    """A task for whichever of the owner's agents has room (a type without a routing rule): the router's."""
    body = {"type": "swap-check", "payload": {"seconds": 0}, "priority": "P2"}
    return ok(http.post("/api/v1/tasks", headers=owner, json=body))["id"]


def _status(http: httpx.Client, owner: dict[str, str], kind: str, item_id: str) -> dict[str, Any]:
    return ok(http.get(f"/api/v1/{kind}/{item_id}", headers=owner))


def _ended(http: httpx.Client, owner: dict[str, str], kind: str, item_id: str) -> dict[str, Any]:
    open_states = ("pending", "assigned", "in_progress", "running", "waiting", "awaiting_approval")
    return eventually(
        lambda: (item := _status(http, owner, kind, item_id))["status"] not in open_states and item,
        timeout_s=LIMIT_S,
        what=f"{kind} {item_id} ended",
    )


def _approval_workflow(http: httpx.Client, owner: dict[str, str]) -> str:
    holder = ok(http.post("/api/v1/agents", headers=owner, json={"name": f"gates-{secrets.token_hex(3)}"}))
    nodes = [
        {"id": "in", "type": "input"},
        {"id": "gate", "type": "approval", "config": {"reason": "go on?"}},
        {"id": "out", "type": "output"},
    ]
    edges = [{"source": "in", "target": "gate"}, {"source": "gate", "target": "out"}]
    body = {"name": "gated", "workflow_data": {"nodes": nodes, "edges": edges}}
    return ok(http.post(f"/api/v1/agents/{holder['id']}/workflows", headers=owner, json=body))["id"]


def _pending_approval_of(http: httpx.Client, owner: dict[str, str], run_id: str) -> str:
    def probe() -> str | None:
        items = ok(http.get("/api/v1/approvals/pending", headers=owner, params={"execution_id": run_id}))
        items = items["approvals"]
        return items[0]["id"] if items else None

    return eventually(probe, timeout_s=60, what=f"run {run_id} waiting on its approval")


def _began(folder: Path, run_id: str, step: str) -> list[str]:
    return [node for key, node, _ in harness.placed(folder) if key == f"{run_id}:{step}:1"]


def _events(database_url: str, subject_ids: list[str]) -> Counter[tuple[str, str]]:
    """(subject id, event type) -> how many times it was emitted."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT subject_id, event_type FROM events WHERE subject_id = ANY(:ids)"), {"ids": subject_ids}
            )
            return Counter((subject, kind) for subject, kind in rows)
    finally:
        engine.dispose()


def _steps(database_url: str, run_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = text("SELECT node_id, status, output FROM execution_steps WHERE execution_id = :id ORDER BY seq")
            return [tuple(row) for row in conn.execute(query, {"id": run_id})]
    finally:
        engine.dispose()


def _started_in_progress(database_url: str, task_ids: list[str]) -> Counter[str]:
    """How many times each task went `in_progress` (a `task.updated` event whose status is in_progress)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT subject_id FROM events WHERE subject_id = ANY(:ids) AND event_type = 'task.updated' "
                    "AND data->>'status' = 'in_progress'"
                ),
                {"ids": task_ids},
            )
            return Counter(subject for (subject,) in rows)
    finally:
        engine.dispose()


def test_a_cluster_lost_with_work_in_flight_is_taken_over_once_by_the_next(
    clusters: dict[str, Platform], database_url: str, tmp_path: Path
) -> None:
    a = clusters["a"] = local_cluster.start(database_url, tmp_path / "a")
    with _client(a) as http:
        owner = harness.register(http)
        agent_id = _agent(http, owner, max_tasks=1)
        busy = _task(http, owner, agent_id, seconds=600)
        eventually(lambda: _status(http, owner, "tasks", busy)["status"] == "in_progress", timeout_s=60, what="busy")
        queued = [_routed(http, owner) for _ in range(3)]  # waiting for the agent's one slot
        gated = ok(http.post(f"/api/v1/workflows/{_approval_workflow(http, owner)}/execute", headers=owner, json={}))
        gated_approval = _pending_approval_of(http, owner, gated["execution_id"])
        free = ok(http.post("/api/v1/approvals", headers=owner, json={"reason": "a decision", "expires_in": 3600}))
        effects = tmp_path / "effects"
        mid_step = harness.execute(http, owner, harness.effect_workflow(http, owner), effects, sleep_s=STEP_S)
        eventually(lambda: _began(effects, mid_step, "first"), timeout_s=60, what="the run inside its first step")
    local_cluster.kill(a)  # lost mid-step, with a task running and three queued
    del clusters["a"]

    b = clusters["b"] = local_cluster.start(database_url, tmp_path / "b")
    with _client(b) as http:
        run = _ended(http, owner, "executions", mid_step)
        assert run["status"] == "completed", run
        assert [step["node_id"] for step in run["steps"]] == ["in", "first", "second", "out"]
        assert len(_began(effects, mid_step, "first")) == 2  # begun in A, again in B, with the same key …
        assert harness.applied(effects) == sorted({f"{mid_step}_first_1", f"{mid_step}_second_1"})  # … once
        # The task A's agent process was running failed, saying so; those queued behind it ran in B, once each.
        interrupted = _ended(http, owner, "tasks", busy)
        assert interrupted["status"] == "failed" and interrupted["error"].startswith("interrupted:"), interrupted
        for task_id in queued:
            assert _ended(http, owner, "tasks", task_id)["status"] == "completed", task_id
        # The approvals A left pending are decided through B, once.
        ok(http.post(f"/api/v1/approvals/{gated_approval}/approve", headers=owner, json={}))
        ok(http.post(f"/api/v1/approvals/{free['id']}/approve", headers=owner, json={}))
        assert http.post(f"/api/v1/approvals/{free['id']}/approve", headers=owner, json={}).status_code == 409
        assert _ended(http, owner, "executions", gated["execution_id"])["status"] == "completed"
    events = _events(database_url, [busy, *queued, gated_approval, free["id"]])
    for task_id in queued:
        assert events[(task_id, "task.assigned")] == 1 and events[(task_id, "task.completed")] == 1, task_id
    assert _started_in_progress(database_url, queued) == Counter(dict.fromkeys(queued, 1))
    assert events[(gated_approval, "approval.approved")] == 1 and events[(free["id"], "approval.approved")] == 1
    assert [node for node, status, _ in _steps(database_url, gated["execution_id"]) if status == "completed"] == [
        "in",
        "gate",
        "out",
    ]


def test_an_overlapping_cluster_takes_over_and_the_old_ones_late_writes_are_refused(
    clusters: dict[str, Platform], database_url: str, tmp_path: Path
) -> None:
    b = clusters.get("b") or local_cluster.start(database_url, tmp_path / "b")
    clusters["b"] = b
    with _client(b) as http_b:
        owner = harness.register(http_b)
        agent_id = _agent(http_b, owner, max_tasks=4)
        # Busy until the test releases it (after B wakes): C, however long it takes to start, activates the agent
        # while B's actor still runs it, and B's late outcome comes after the takeover.
        release = tmp_path / "release-busy"
        busy = _task(http_b, owner, agent_id, seconds=LIMIT_S * 3, until=release)
        eventually(lambda: _status(http_b, owner, "tasks", busy)["status"] == "in_progress", timeout_s=60, what="busy")
        c = clusters["c"] = local_cluster.start(database_url, tmp_path / "c")  # both clusters up from here
        effects = tmp_path / "effects"
        mid_step = harness.execute(http_b, owner, harness.effect_workflow(http_b, owner), effects, sleep_s=STEP_S)
        eventually(lambda: _began(effects, mid_step, "first"), timeout_s=60, what="the run inside its first step")
        b_pids = local_cluster.pids(b)

        local_cluster.pause(b)  # B stops answering; its run actor still holds the run's lease, for now
        paused_at = time.monotonic()
        with _client(c) as http_c:
            # C's reconciler finds the lease run out and resumes the run.
            eventually(
                lambda: len(_began(effects, mid_step, "first")) == 2, timeout_s=LIMIT_S, what="C resumed the run"
            )
            assert time.monotonic() - paused_at < STEP_S * 2  # well before B's step could have ended
            interrupted = _ended(http_c, owner, "tasks", busy)
            assert interrupted["status"] == "failed" and interrupted["error"].startswith("interrupted:")
            local_cluster.resume(b)  # B wakes, with both clusters up: its late writes must be refused
            release.touch()  # B's actor ends the busy task now and reports it (refused)

            # Tasks sent through both clusters' APIs while both run: B's router may assign some and send them
            # to B's agent actor, which is no longer the agent's; C's actor runs every one, once.
            sent = [_routed(api, owner) for api in (http_b, http_c, http_b, http_c)]
            done = [_ended(http_c, owner, "tasks", task_id) for task_id in sent]
            assert [task["status"] for task in done] == ["completed"] * len(sent), done
            assert not {task["result"]["pid"] for task in done} & b_pids, "a task ran on the superseded cluster"
            run = _ended(http_c, owner, "executions", mid_step)
            local_cluster.kill(b)
            del clusters["b"]

            assert run["status"] == "completed", run
            steps = _steps(database_url, mid_step)
            completed = [(node, output) for node, status, output in steps if status == "completed"]
            assert [node for node, _ in completed] == ["in", "first", "second", "out"], steps
            # B's actor ran its first step to its end after waking, but the step recorded is C's.
            first = dict(completed)["first"]
            assert first["pid"] not in b_pids, (first, b_pids)
            assert harness.applied(effects) == sorted({f"{mid_step}_first_1", f"{mid_step}_second_1"})
            assert _status(http_c, owner, "tasks", busy)["status"] == "failed"  # B's late outcome refused

            # The approval and queue still work through C alone.
            free = ok(http_c.post("/api/v1/approvals", headers=owner, json={"reason": "after", "expires_in": 600}))
            ok(http_c.post(f"/api/v1/approvals/{free['id']}/approve", headers=owner, json={}))
    events = _events(database_url, [busy, *sent])
    for task_id in sent:
        assert events[(task_id, "task.assigned")] == 1 and events[(task_id, "task.completed")] == 1, task_id
    assert _started_in_progress(database_url, sent) == Counter(dict.fromkeys(sent, 1))
    assert events[(busy, "task.completed")] == 0 and events[(busy, "task.failed")] == 1
