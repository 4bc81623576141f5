"""Workflow runs on the live platform, over HTTP through Serve, each run on a Ray actor: the warm pool,
20 kills of the run's process mid-step with every side effect applied once, a cluster restart mid-run, an
approval wait that holds no process, cancel, and the run's stream."""

from __future__ import annotations

import signal
import time
from itertools import pairwise
from pathlib import Path

import httpx
import psutil

from tests.e2e.test_agent_actors import AGENTS, _create, _deployed, _eventually
from tests.platform_fixtures import Platform

FIX = "tests.fixtures.workflow_nodes"
EXECUTING = "WorkflowRunActor.execute"  # Ray's process title while an actor runs that method


def _workflow(http: httpx.Client, headers: dict, *nodes: dict) -> dict:
    agent = _create(http, headers)
    edges = [{"source": a["id"], "target": b["id"]} for a, b in pairwise(nodes)]
    response = http.post(
        f"{AGENTS}/{agent['id']}/workflows",
        headers=headers,
        json={"name": "Flow", "workflow_data": {"nodes": list(nodes), "edges": edges}},
    )
    assert response.status_code == 201, response.text
    return response.json()


def _execute(http: httpx.Client, headers: dict, workflow: dict, **body) -> str:
    response = http.post(f"/api/v1/workflows/{workflow['id']}/execute", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()["execution_id"]


def _run(http: httpx.Client, headers: dict, execution_id: str) -> dict:
    return http.get(f"/api/v1/executions/{execution_id}", headers=headers).json()


def _ended(http: httpx.Client, headers: dict, execution_id: str, timeout_s: float = 60) -> dict:
    return _eventually(
        lambda: (
            (r := _run(http, headers, execution_id))["status"] in ("completed", "failed", "cancelled", "timeout") and r
        ),
        timeout_s=timeout_s,
        what=f"run {execution_id} ended",
    )


def _executing(platform: Platform) -> list[psutil.Process]:
    return platform.processes(EXECUTING)


def test_a_run_binds_to_a_warm_actor_and_streams_its_steps(http, owner) -> None:
    workflow = _workflow(
        http,
        owner,
        {"id": "in", "type": "input"},
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output"},
    )
    run = _ended(http, owner, _execute(http, owner, workflow, input_data={"value": 41}))
    assert run["status"] == "completed" and run["output"]["value"] == 42
    assert run["actor_name"].startswith("run-pool:") and run["correlation_id"]
    with http.stream("GET", f"/api/v1/executions/{run['id']}/stream", headers=owner) as stream:
        text = "".join(stream.iter_text())
    assert text.count("event: step") == 3 and "event: end" in text


def test_a_run_killed_mid_step_20_times_resumes_with_each_side_effect_once(http, owner, tmp_path, platform) -> None:
    workflow = _workflow(
        http,
        owner,
        {"id": "in", "type": "input"},
        {"id": "first", "type": "python", "config": {"function": f"{FIX}:effect"}},
        {"id": "second", "type": "python", "config": {"function": f"{FIX}:effect"}},
        {"id": "out", "type": "output"},
    )
    for trial in range(20):
        effects = tmp_path / f"trial-{trial}"
        run_id = _execute(http, owner, workflow, input_data={"effects_dir": str(effects), "effect_sleep": 0.8})
        victim_node = "first" if trial % 2 == 0 else "second"
        calls = effects / "calls"
        _eventually(
            lambda: calls.exists() and f":{victim_node}:" in calls.read_text(),  # noqa: B023
            timeout_s=60,
            what=f"trial {trial}: node {victim_node} started",
        )
        [process] = _eventually(lambda: _executing(platform), timeout_s=10, what="the executing run actor")
        process.send_signal(signal.SIGKILL)
        run = _ended(http, owner, run_id)
        assert run["status"] == "completed", (trial, run["error"])
        assert run["resumes"] >= 1 and [s["node_id"] for s in run["steps"]] == ["in", "first", "second", "out"]
        keys = calls.read_text().split()
        applied = sorted(p.name for p in effects.iterdir() if p.name != "calls")
        # Each node's effect exists once, under the key of its one completed attempt …
        assert applied == sorted({f"{run_id}_first_1", f"{run_id}_second_1"}), (trial, applied)
        # … although the killed node ran more than once, each time with the same key.
        assert keys.count(f"{run_id}:{victim_node}:1") >= 2, (trial, keys)


def test_an_approval_wait_holds_no_process_and_the_decision_resumes_the_run(http, owner, approver, platform) -> None:
    workflow = _workflow(
        http,
        owner,
        {"id": "in", "type": "input"},
        {"id": "gate", "type": "approval", "config": {"reason": "Deploy?"}},
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output"},
    )
    before = len(platform.processes("ray::"))
    run_ids = [_execute(http, owner, workflow, input_data={"value": i}) for i in range(5)]
    waiting = [
        _eventually(
            lambda r=r: (x := _run(http, owner, r))["status"] == "waiting" and x, timeout_s=30, what="run waiting"
        )
        for r in run_ids
    ]
    assert _executing(platform) == []  # five runs waiting, no run actor executing any of them
    after = len(platform.processes("ray::"))
    assert after <= before  # no process was started for the waits
    approval_id = waiting[0]["waiting_on"]["id"]
    assert http.post(f"/api/v1/approvals/{approval_id}/approve", headers=approver).status_code == 200
    done = _ended(http, owner, run_ids[0])
    assert done["status"] == "completed" and done["output"]["value"] == 1
    for other in waiting[1:]:
        http.delete(f"/api/v1/executions/{other['id']}", headers=owner)


def test_a_running_run_is_cancelled_at_once(http, owner) -> None:
    workflow = _workflow(
        http,
        owner,
        {"id": "in", "type": "input"},
        {"id": "nap", "type": "python", "config": {"function": f"{FIX}:sleep"}},
        {"id": "out", "type": "output"},
    )
    run_id = _execute(http, owner, workflow, input_data={"seconds": 30})
    _eventually(lambda: _run(http, owner, run_id)["current_step"] == "nap", timeout_s=30, what="run at nap")
    started = time.monotonic()
    cancelled = http.delete(f"/api/v1/executions/{run_id}", headers=owner)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert time.monotonic() - started < 6
    # The pool recycles the actor whose node thread was abandoned; the next run still runs.
    timed = _ended(
        http, owner, _execute(http, owner, workflow, input_data={"seconds": 5}, execution_options={"timeout": 500})
    )
    assert timed["status"] == "timeout"


def test_a_cluster_restart_mid_run_resumes_it(http, owner, platform, tmp_path) -> None:
    workflow = _workflow(
        http,
        owner,
        {"id": "in", "type": "input"},
        {"id": "first", "type": "python", "config": {"function": f"{FIX}:effect"}},
        {"id": "second", "type": "python", "config": {"function": f"{FIX}:effect"}},
        {"id": "out", "type": "output"},
    )
    effects = tmp_path / "restart"
    run_id = _execute(http, owner, workflow, input_data={"effects_dir": str(effects), "effect_sleep": 4})
    _eventually(lambda: (effects / "calls").exists(), timeout_s=30, what="first node started")
    platform.restart()
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        run = _ended(client, owner, run_id, timeout_s=120)
    assert run["status"] == "completed" and run["resumes"] >= 1, run
    applied = sorted(p.name for p in Path(effects).iterdir() if p.name != "calls")
    assert applied == sorted({f"{run_id}_first_1", f"{run_id}_second_1"})


def test_a_hosted_agent_runs_its_active_workflow_on_the_tasks_routed_to_it(http, owner) -> None:
    agent = _deployed(http, owner, framework="native", configuration={"handler": "tests.fixtures.handlers:double"})
    nodes = [
        {"id": "in", "type": "input"},
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output", "config": {"fields": ["value"]}},
    ]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in pairwise(nodes)]
    made = http.post(
        f"{AGENTS}/{agent['id']}/workflows",
        headers=owner,
        json={"name": "on tasks", "workflow_data": {"nodes": nodes, "edges": edges}},
    )
    assert made.status_code == 201, made.text
    task = http.post(
        "/api/v1/tasks",
        headers=owner,
        json={"type": "general", "priority": "P3", "agentId": agent["id"], "payload": {"value": 20}},
    ).json()
    done = _eventually(
        lambda: (
            (t := http.get(f"/api/v1/tasks/{task['id']}", headers=owner).json())["status"] in ("completed", "failed")
            and t
        ),
        timeout_s=60,
        what="the task done",
    )
    assert done["status"] == "completed" and done["result"] == {"value": 21}, done  # the workflow, not the handler
    [run] = http.get("/api/v1/executions", headers=owner, params={"agentId": agent["id"]}).json()["executions"]
    assert run["task_id"] == task["id"] and run["trigger"] == "task" and run["status"] == "completed"
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_the_pool_runs_several_runs_per_actor_grows_under_a_backlog_and_shrinks_when_idle(
    http, owner, approver
) -> None:
    """A burst beyond the floor's slots (2 actors x 4 runs) queues; the pool starts more warm actors, every
    run completes, runs overlap on one actor, and the extra actors stop once idle."""
    workflow = _workflow(
        http,
        owner,
        {"id": "in", "type": "input"},
        {"id": "nap", "type": "python", "config": {"function": f"{FIX}:sleep"}},
        {"id": "out", "type": "output"},
    )

    def pool() -> dict:
        return http.get("/api/v1/system/status", headers=approver).json()["ray"]["run_pool"]

    shape = pool()
    assert (shape["floor"], shape["concurrency"]) == (2, 4) and shape["ceiling"] > 2
    run_ids = [_execute(http, owner, workflow, input_data={"seconds": 2}) for _ in range(16)]
    grown = _eventually(lambda: (p := pool())["pool_size"] > 2 and p, timeout_s=30, what="the pool grew")
    assert grown["pool_size"] <= shape["ceiling"]
    runs = [_ended(http, owner, r) for r in run_ids]
    assert [r["status"] for r in runs] == ["completed"] * 16
    spans: dict[str, list[tuple[str, str]]] = {}
    for run in runs:
        spans.setdefault(run["actor_name"], []).append((run["started_at"], run["completed_at"]))
    assert any(
        a[0] < b[1] and b[0] < a[1] for held in spans.values() for i, a in enumerate(held) for b in held[i + 1 :]
    ), spans  # two runs at once on one actor
    assert len(spans) > 2, spans  # and some ran on the actors the pool added
    _eventually(lambda: pool()["pool_size"] == 2, timeout_s=30, what="the pool back at its floor")
