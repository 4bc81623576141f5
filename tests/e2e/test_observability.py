"""Observability on the live platform: one trace from an HTTP request through the router's or a run actor's
work down to their SQL statements (spans of several processes, read back from the jsonl exporter's file),
`/system/status` listing the platform's actors and nodes, the platform's log lines, and Ray's metrics port
exporting the `orchestrator_` metrics."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx

from tests.e2e.conftest import E2E_REPLICAS, Platform
from tests.e2e.test_agent_actors import _deployed, _eventually
from tests.e2e.test_workflow_runs import FIX, _ended, _execute, _workflow

CORRELATION = "orchestrator.correlation_id"


def _spans(platform: Platform, correlation_id: str) -> list[dict[str, Any]]:
    path = platform.data_dir / "traces.jsonl"
    if not path.exists():
        return []
    spans = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [span for span in spans if span["attributes"].get(CORRELATION) == correlation_id]


def _children(spans: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [span for span in spans if span["parent_id"] == parent["span_id"]]


def test_a_task_is_one_trace_from_the_request_through_the_router_to_the_database(http, owner, platform) -> None:
    _deployed(http, owner, mode="external", type="dev", max_concurrent_tasks=1)  # it takes the task
    correlation_id = f"e2e-trace-{secrets.token_hex(4)}"
    response = http.post(
        "/api/v1/tasks",
        headers={**owner, "X-Correlation-ID": correlation_id},
        json={"type": "bugfix", "title": "traced task", "priority": "P3"},
    )
    assert response.status_code == 201, response.text

    def traced() -> list[dict[str, Any]] | None:
        spans = _spans(platform, correlation_id)
        assigned = [span for span in spans if span["name"] == "router.assign"]
        # Each process exports in batches (every few seconds): wait for the replica's server span too.
        served = any(span["kind"] == "SERVER" for span in spans)
        routed = any(span["name"] == "router.submit" for span in spans)
        return spans if served and routed and assigned and _children(spans, assigned[0]) else None

    spans = _eventually(traced, timeout_s=30, what="the router's spans of the request")
    [server] = [span for span in spans if span["kind"] == "SERVER"]
    [routed] = [span for span in spans if span["name"] == "router.submit"]
    [assigned] = [span for span in spans if span["name"] == "router.assign"]
    assert server["service"] == "orchestrator-api" and routed["service"] == "orchestrator-router"
    assert server["attributes"]["http.route"] == "/api/v1/tasks"
    assert routed["parent_id"] == assigned["parent_id"] == server["span_id"]
    assert (
        routed["attributes"]["orchestrator.task_id"]
        == assigned["attributes"]["orchestrator.task_id"]
        == (response.json()["id"])
    )
    assert {span["trace_id"] for span in spans} == {server["trace_id"]}
    # The task is written by a group commit (alone here, or with others' tasks): its span is the request's child.
    [group] = [span for span in _children(spans, server) if span["name"] == "group_commit"]
    api_statements = [span for span in _children(spans, group) if span["kind"] == "CLIENT"]
    router_statements = [span for span in _children(spans, assigned) if span["kind"] == "CLIENT"]
    assert any(span["attributes"]["db.operation"] == "INSERT" for span in api_statements)
    assert any(span["attributes"]["db.operation"] == "UPDATE" for span in router_statements)
    assert all(span["service"] == "orchestrator-router" for span in router_statements)


def test_a_run_is_traced_into_its_actor_and_its_steps_writes(http, owner, platform) -> None:
    workflow = _workflow(
        http,
        owner,
        {"id": "in", "type": "input"},
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output"},
    )
    correlation_id = f"e2e-run-{secrets.token_hex(4)}"
    traced_owner = {**owner, "X-Correlation-ID": correlation_id}
    execution_id = _execute(http, traced_owner, workflow, input_data={"value": 1})
    assert _ended(http, owner, execution_id)["status"] == "completed"

    def traced() -> list[dict[str, Any]] | None:
        spans = _spans(platform, correlation_id)
        runs = [span for span in spans if span["name"] == "run.execute" and span["end"]]
        served = any(span["kind"] == "SERVER" for span in spans)  # exported in the replica's next batch
        return spans if served and runs and _children(spans, runs[0]) else None

    spans = _eventually(traced, timeout_s=30, what="the run actor's spans of the request")
    [server] = [span for span in spans if span["kind"] == "SERVER"]
    [run] = [span for span in spans if span["name"] == "run.execute"]
    assert run["service"] == "orchestrator-run" and run["parent_id"] == server["span_id"]
    assert run["attributes"]["orchestrator.execution_id"] == execution_id
    assert run["attributes"]["orchestrator.actor"].startswith("run-pool:")
    writes = [span for span in _children(spans, run) if span["kind"] == "CLIENT"]
    assert len(writes) >= 3  # the claim and a checkpoint per step at least
    assert {span["trace_id"] for span in spans} == {server["trace_id"]}


def test_system_status_lists_the_platform_actors_and_live_nodes(http, approver, owner) -> None:
    assert http.get("/api/v1/system/status", headers=owner).status_code == 403
    status = http.get("/api/v1/system/status", headers=approver).json()
    ray = status["ray"]
    assert ray["connected"] is True and ray["nodes_alive"] >= 1
    assert all(node["alive"] and node["resources_total"]["CPU"] > 0 for node in ray["nodes"] if node["alive"])
    for name in ("router", "reconciler", "store", "runs"):
        assert ray["actors"]["singletons"][name]["state"] == "ALIVE", name
    assert ray["actors"]["by_kind"]["api"]["ALIVE"] == E2E_REPLICAS
    assert ray["actors"]["by_kind"]["run-pool"]["ALIVE"] >= 1
    assert ray["serve"]["applications"]["orchestrator"]["status"] == "RUNNING"


def test_system_logs_return_the_platform_actors_lines(http, approver) -> None:
    body = http.get("/api/v1/system/logs?service=router&level=info&limit=50", headers=approver).json()
    assert body["logs"], body
    assert all(
        entry["service"] == "router" and entry["level"] in ("INFO", "WARNING", "ERROR", "CRITICAL")
        for entry in body["logs"]
    )
    assert any(entry["message"].startswith("router started") for entry in body["logs"])
    stamps = [entry["timestamp"] for entry in body["logs"]]
    assert stamps == sorted(stamps, reverse=True)


def test_rays_metrics_port_exports_the_platform_metrics(http, approver) -> None:
    nodes = http.get("/api/v1/system/status", headers=approver).json()["ray"]["nodes"]
    ports = [node["metrics_export_port"] for node in nodes if node["alive"] and node["metrics_export_port"]]
    assert ports

    def exported() -> set[str] | None:
        names = set()
        for port in ports:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            names |= {
                line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("ray_orchestrator_")
            }
        # The router sets its queue depth every tick, the reconciler the run gauges every pass.
        wanted = {"ray_orchestrator_queue_depth", "ray_orchestrator_runs", "ray_orchestrator_approvals_pending"}
        return names if wanted <= names else None

    _eventually(exported, timeout_s=60, what="the orchestrator_ metrics on Ray's metrics port")
