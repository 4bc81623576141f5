"""Agents as Ray actors, over HTTP against the platform `orchestrator up` runs (real Ray, real database).

Covers issue 4's proofs: deploy/undeploy with resource limits, INSUFFICIENT_RESOURCES, waiting for
placement, FRAMEWORK_UNAVAILABLE / DEPLOYMENT_FAILED, the container endpoints (status, restart, logs),
crash recovery, idle passivation and re-activation, external workers' heartbeats, delete stopping the
actor, bounded database connections, and the redeploy after the whole cluster restarts.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from persistence.models import Event
from tests.e2e.conftest import E2E_CPUS, E2E_HEARTBEAT_TIMEOUT_S, E2E_IDLE_TIMEOUT_S, Platform

AGENTS = "/api/v1/agents"
GRAPH = "tests.fixtures.graphs:build_support_graph"


def _create(http: httpx.Client, headers: dict[str, str], **body: Any) -> dict:
    response = http.post(AGENTS, headers=headers, json={"name": f"bot-{secrets.token_hex(3)}", **body})
    assert response.status_code == 201, response.text
    return response.json()


def _deployed(http: httpx.Client, headers: dict[str, str], **body: Any) -> dict:
    agent = _create(http, headers, **body)
    response = http.post(f"{AGENTS}/{agent['id']}/deploy", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["agent"]


def _container(http: httpx.Client, headers: dict[str, str], agent_id: str) -> dict:
    response = http.get(f"{AGENTS}/{agent_id}/container", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _eventually(probe: Callable[[], Any], *, timeout_s: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what} not reached within {timeout_s}s (last: {last})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_deploy_starts_a_named_actor_with_the_agents_limits_and_undeploy_stops_it(http, owner) -> None:
    agent = _create(
        http, owner, framework="langgraph", configuration={"graph": GRAPH}, resource_limits={"cpu": 0.5, "memory": 256}
    )
    response = http.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "active" and body["container_id"] and body["deployed_at"]
    assert body["deployment_logs"][-1] == "Agent deployed and running"

    container = _container(http, owner, agent["id"])
    assert container["actor_name"] == f"agent:{agent['id']}" and container["container_id"] == body["container_id"]
    assert container["status"] == "running" and container["health_status"] == "healthy"
    assert container["required_resources"] == {"CPU": 0.5, "memory": 256 * 1024 * 1024}
    assert container["resource_usage"]["memory_usage"] > 10 and container["resource_usage"]["memory_limit"] == 256
    assert container["agent"]["framework"] == "langgraph" and _pid_alive(container["pid"])

    again = http.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner)
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONFLICT"

    undeployed = http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)
    assert undeployed.status_code == 200 and undeployed.json()["status"] == "inactive"
    _eventually(lambda: not _pid_alive(container["pid"]), timeout_s=30, what="actor process gone")
    assert _container(http, owner, agent["id"])["status"] == "stopped"
    redeployed = http.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner)
    assert redeployed.status_code == 200 and redeployed.json()["status"] == "active"
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_resources_no_node_can_ever_hold_answer_insufficient_resources(http, owner) -> None:
    agent = _create(http, owner, resource_limits={"cpu": E2E_CPUS + 1})
    response = http.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_RESOURCES" and f"{E2E_CPUS} CPU" in error["message"]
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["status"] == "draft"


def test_resources_that_fit_a_node_but_are_taken_keep_the_agent_deploying(http, owner) -> None:
    # The API replicas hold one of the node's CPUs: all of them fit the node, but not now.
    agent = _create(http, owner, resource_limits={"cpu": E2E_CPUS})
    response = http.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "deploying" and "waiting for" in response.json()["status_message"]
    assert _container(http, owner, agent["id"])["status"] == "pending"
    assert http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner).json()["status"] == "inactive"
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["status"] == "inactive"


def test_a_framework_without_adapter_and_a_broken_runtime_fail_deploy_clearly(http, owner) -> None:
    crew = _create(http, owner, framework="metagpt")
    response = http.post(f"{AGENTS}/{crew['id']}/deploy", headers=owner)
    assert response.status_code == 422 and response.json()["error"]["code"] == "FRAMEWORK_UNAVAILABLE"
    assert http.get(f"{AGENTS}/{crew['id']}", headers=owner).json()["status"] == "draft"

    broken = _create(http, owner, framework="langgraph", configuration={"graph": "tests.fixtures.missing:graph"})
    response = http.post(f"{AGENTS}/{broken['id']}/deploy", headers=owner)
    assert response.status_code == 422 and response.json()["error"]["code"] == "DEPLOYMENT_FAILED"
    assert "No module named 'tests.fixtures.missing'" in response.json()["error"]["message"]
    stored = http.get(f"{AGENTS}/{broken['id']}", headers=owner).json()
    assert stored["status"] == "error" and "tests.fixtures.missing" in stored["status_message"]

    http.patch(f"{AGENTS}/{broken['id']}", headers=owner, json={"configuration": {"graph": GRAPH}})
    fixed = http.post(f"{AGENTS}/{broken['id']}/deploy", headers=owner)
    assert fixed.status_code == 200 and fixed.json()["status"] == "active"
    http.post(f"{AGENTS}/{broken['id']}/undeploy", headers=owner)


def test_container_restart_starts_a_new_process_that_reloads_the_agent(http, owner) -> None:
    agent = _deployed(http, owner, framework="langgraph", configuration={"graph": GRAPH})
    before = _container(http, owner, agent["id"])
    http.patch(f"{AGENTS}/{agent['id']}", headers=owner, json={"version": "1.1.0", "name": "renamed"})

    response = http.post(f"{AGENTS}/{agent['id']}/container/restart", headers=owner)
    assert response.status_code == 200 and response.json()["status"] == "restarting"
    assert response.json()["container_id"] == before["container_id"]

    def restarted() -> dict | None:
        now = _container(http, owner, agent["id"])
        return now if now["health_status"] == "healthy" and now["pid"] != before["pid"] else None

    after = _eventually(restarted, what="a new healthy process")
    assert after["restarts"] == before["restarts"] + 1
    assert after["agent"]["loaded_version"] == "1.1.0" and after["agent"]["loaded_name"] == "renamed"
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_a_killed_actor_process_is_brought_back_by_ray(http, owner) -> None:
    agent = _deployed(http, owner)
    before = _container(http, owner, agent["id"])
    os.kill(before["pid"], signal.SIGKILL)

    def back() -> dict | None:
        now = _container(http, owner, agent["id"])
        return now if now["health_status"] == "healthy" and now["pid"] != before["pid"] else None

    _eventually(back, what="the actor restarted after SIGKILL")
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["status"] == "active"
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_container_logs_are_the_actors_own_lines_with_since_until_and_tail(http, owner) -> None:
    agent = _deployed(http, owner)
    response = http.get(f"{AGENTS}/{agent['id']}/container/logs", headers=owner)
    assert response.status_code == 200, response.text
    logs = response.json()["logs"]
    started = [entry for entry in logs if "started: framework=native" in entry["message"]]
    assert started and started[0]["level"] == "INFO" and started[0]["source"] == "orchestrator.agent"
    stamp = started[0]["timestamp"]
    later = http.get(
        f"{AGENTS}/{agent['id']}/container/logs", headers=owner, params={"since": "2999-01-01T00:00:00Z"}
    ).json()["logs"]
    assert later == []
    upto = http.get(f"{AGENTS}/{agent['id']}/container/logs", headers=owner, params={"until": stamp}).json()["logs"]
    assert all(entry["timestamp"] <= stamp for entry in upto) and upto
    assert (
        len(http.get(f"{AGENTS}/{agent['id']}/container/logs", headers=owner, params={"tail": 1}).json()["logs"]) == 1
    )
    # A time without a zone is taken as UTC.
    naive = http.get(f"{AGENTS}/{agent['id']}/container/logs", headers=owner, params={"since": "2999-01-01T00:00:00"})
    assert naive.status_code == 200 and naive.json()["logs"] == []
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_an_idle_agent_releases_its_process_and_a_heartbeat_does_not_wake_it(http, owner) -> None:
    agent = _deployed(http, owner, mode="external")
    pid = _container(http, owner, agent["id"])["pid"]

    passivated = _eventually(
        lambda: (c := _container(http, owner, agent["id"]))["status"] == "passivated" and c,
        timeout_s=E2E_IDLE_TIMEOUT_S + 30,
        what="passivation",
    )
    assert passivated["pid"] is None and passivated["passivated_at"]
    _eventually(lambda: not _pid_alive(pid), timeout_s=30, what="the idle process exited")
    stored = http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()
    assert stored["status"] == "active" and stored["passivated_at"]

    # A worker that only reports it is alive costs no process: the heartbeat is stored, nothing wakes up.
    beat = http.post(f"{AGENTS}/{agent['id']}/heartbeat", headers=owner)
    assert beat.status_code == 200 and beat.json()["online"] is True
    assert _container(http, owner, agent["id"])["status"] == "passivated"
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["online"] is True
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_an_external_worker_is_online_while_it_beats_and_offline_when_it_stops(http, owner, platform_db) -> None:
    hosted = _deployed(http, owner)
    refused = http.post(f"{AGENTS}/{hosted['id']}/heartbeat", headers=owner)
    assert refused.status_code == 409

    agent = _deployed(http, owner, mode="external")
    assert agent["online"] is False
    beat = http.post(f"{AGENTS}/{agent['id']}/heartbeat", headers=owner)
    assert beat.status_code == 200 and beat.json()["online"] is True
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["online"] is True
    # The heartbeat reaches the live mailbox actor as a message of its own: eventually, not at once.
    _eventually(lambda: _container(http, owner, agent["id"])["agent"]["online"] is True, what="the actor told")

    def offline_event() -> bool:
        with platform_db.session() as session:
            rows = session.execute(select(Event).where(Event.subject_id == agent["id"])).scalars().all()
        return any(row.data.get("online") is False for row in rows)

    _eventually(offline_event, timeout_s=E2E_HEARTBEAT_TIMEOUT_S + 20, what="the reconciler marking it offline")
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["online"] is False
    assert _container(http, owner, agent["id"])["agent"]["online"] is False
    for item in (hosted, agent):
        http.post(f"{AGENTS}/{item['id']}/undeploy", headers=owner)


def test_deleting_a_deployed_agent_stops_its_actor_first(http, owner) -> None:
    agent = _deployed(http, owner)
    pid = _container(http, owner, agent["id"])["pid"]
    response = http.delete(f"{AGENTS}/{agent['id']}", headers=owner)
    assert response.status_code == 200
    _eventually(lambda: not _pid_alive(pid), timeout_s=30, what="the deleted agent's process gone")
    assert http.get(f"{AGENTS}/{agent['id']}/container", headers=owner).status_code == 404


def test_another_tenant_cannot_see_or_control_the_actor(http, owner) -> None:
    agent = _deployed(http, owner)
    email = f"other-{secrets.token_hex(4)}@example.com"
    http.post("/api/v1/auth/register", json={"email": email, "password": "correct horse 1"})
    other = {
        "Authorization": "Bearer "
        + http.post("/api/v1/auth/login", json={"email": email, "password": "correct horse 1"}).json()["access_token"]
    }
    for method, path in [
        ("GET", "container"),
        ("POST", "container/restart"),
        ("GET", "container/logs"),
        ("POST", "undeploy"),
        ("POST", "deploy"),
    ]:
        assert http.request(method, f"{AGENTS}/{agent['id']}/{path}", headers=other).status_code == 404
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_actors_share_a_bounded_number_of_database_connections(http, owner, platform_db) -> None:
    if platform_db.dialect != "postgresql":
        pytest.skip("connection counting needs Postgres (CI sets ORCHESTRATOR_TEST_DATABASE_URL)")

    def connections() -> dict[str, int]:
        with platform_db.connect() as conn:
            return dict(
                conn.execute(
                    text(
                        "SELECT application_name, count(*) FROM pg_stat_activity "
                        "WHERE application_name LIKE 'orchestrator:%' GROUP BY application_name"
                    )
                ).all()
            )

    def run_tasks_on(agents: list[dict]) -> None:
        created = [
            http.post("/api/v1/tasks", headers=owner, json={"agentId": a["id"], "payload": {"seconds": 0.2}}).json()[
                "id"
            ]
            for a in agents
        ]
        for task_id in created:
            assert _task_done(http, owner, task_id)["status"] == "completed"

    handler = {"configuration": {"handler": "tests.fixtures.handlers:sleep"}}
    first = [_deployed(http, owner, **handler) for _ in range(3)]
    run_tasks_on(first)
    before = connections()
    more = [_deployed(http, owner, **handler) for _ in range(6)]
    run_tasks_on(first + more)
    after = connections()
    # Every connection belongs to a component with a fixed pool, whatever the number of agents: the API
    # replicas (a pool of 10 each), the store (ORCHESTRATOR_ACTOR_DATABASE_POOL_SIZE), the router
    # and the reconciler (2 each), the event hub (2 + 1), the run pool's actors (2 each, while they run).
    # Nothing else (an agent opening its own would show as `orchestrator`).
    bounds = {
        "orchestrator:api": 2 * 10,
        "orchestrator:store": 4,
        "orchestrator:router": 2,
        "orchestrator:reconciler": 2,
        "orchestrator:event-hub": 3,
        "orchestrator:run": 2 * 2,
    }
    assert set(before) | set(after) <= set(bounds), (before, after)
    assert all(count <= bounds[name] for name, count in after.items()), after
    for agent in first + more:
        http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_active_agents_are_redeployed_after_the_whole_cluster_restarts(platform: Platform, http, owner) -> None:
    live = _deployed(http, owner, framework="langgraph", configuration={"graph": GRAPH})
    undeployed = _deployed(http, owner)
    http.post(f"{AGENTS}/{undeployed['id']}/undeploy", headers=owner)
    before = _container(http, owner, live["id"])

    platform.restart()

    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        after = _eventually(
            lambda: (c := _container(client, owner, live["id"]))["health_status"] == "healthy" and c,
            what="the active agent running again",
        )
        assert after["pid"] != before["pid"] and after["agent"]["framework"] == "langgraph"
        agent = client.get(f"{AGENTS}/{live['id']}", headers=owner).json()
        assert agent["status"] == "active" and agent["deployed_at"] == live["deployed_at"]
        assert client.get(f"{AGENTS}/{undeployed['id']}", headers=owner).json()["status"] == "inactive"
        assert _container(client, owner, undeployed["id"])["status"] == "stopped"
        client.post(f"{AGENTS}/{live['id']}/undeploy", headers=owner)


def _task_done(http: httpx.Client, headers: dict[str, str], task_id: str) -> dict:
    def finished() -> dict | None:
        task = http.get(f"/api/v1/tasks/{task_id}", headers=headers).json()
        return task if task["status"] in ("completed", "failed") else None

    return _eventually(finished, what=f"task {task_id} finished")


def test_a_hosted_agent_runs_its_task_in_its_actor_with_the_real_graph(http, owner) -> None:
    agent = _deployed(http, owner, framework="langgraph", configuration={"graph": GRAPH, "responses": ["Reset it."]})
    response = http.post(
        "/api/v1/tasks",
        headers=owner,
        json={
            "type": "faq_update",
            "agentId": agent["id"],
            "payload": {"question": "Password reset?", "messages": []},
        },
    )
    assert response.status_code == 201 and response.json()["status"] == "assigned"
    task = _task_done(http, owner, response.json()["id"])
    assert task["status"] == "completed" and task["started_at"] and task["completed_at"]
    assert task["result"]["messages"][-1] == {"type": "ai", "content": "Reset it."}
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 0
    metrics = http.get(f"{AGENTS}/{agent['id']}/metrics", headers=owner).json()["task_metrics"]
    assert metrics["completed_tasks"] == 1 and metrics["success_rate"] == 1.0
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_a_failing_handler_fails_the_task_not_the_agent(http, owner) -> None:
    agent = _deployed(http, owner, configuration={"handler": "tests.fixtures.handlers:fail"})
    created = http.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"], "payload": {"issue": "42"}})
    task = _task_done(http, owner, created.json()["id"])
    assert task["status"] == "failed" and task["error"] == "ValueError: cannot handle 42"
    assert _container(http, owner, agent["id"])["health_status"] == "healthy"
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_an_external_worker_pulls_its_tasks_and_reports_them(http, owner) -> None:
    agent = _deployed(http, owner, mode="external", max_concurrent_tasks=3)
    created = [
        http.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"], "priority": p}).json()
        for p in ("P2", "low")
    ]
    pulled = http.get(f"{AGENTS}/{agent['id']}/tasks", headers=owner, params={"status": "assigned"}).json()["tasks"]
    assert [task["id"] for task in pulled] == [task["id"] for task in created]
    for task in pulled:
        assert http.patch(f"/api/v1/tasks/{task['id']}/status?status=in_progress", headers=owner).status_code == 200
        done = http.patch(f"/api/v1/tasks/{task['id']}/status", headers=owner, json={"status": "completed"})
        assert done.json()["status"] == "completed"
    assert http.get(f"{AGENTS}/{agent['id']}/metrics", headers=owner).json()["task_metrics"]["completed_tasks"] == 2
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_a_task_for_a_passivated_agent_reactivates_it(http, owner) -> None:
    agent = _deployed(http, owner, configuration={"handler": "tests.fixtures.handlers:whoami"})
    _eventually(
        lambda: _container(http, owner, agent["id"])["status"] == "passivated",
        timeout_s=E2E_IDLE_TIMEOUT_S + 30,
        what="passivation",
    )
    created = http.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"], "payload": {"n": 1}})
    task = _task_done(http, owner, created.json()["id"])
    assert task["status"] == "completed" and task["result"]["n"] == 1
    assert _container(http, owner, agent["id"])["pid"] == task["result"]["pid"]  # a new, live process ran it
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_a_task_whose_process_dies_fails_with_the_reason_and_frees_the_agent(http, owner) -> None:
    agent = _deployed(http, owner, configuration={"handler": "tests.fixtures.handlers:sleep"})
    created = http.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"], "payload": {"seconds": 60}})
    task_id = created.json()["id"]
    _eventually(
        lambda: http.get(f"/api/v1/tasks/{task_id}", headers=owner).json()["status"] == "in_progress",
        what="the task started",
    )
    os.kill(_container(http, owner, agent["id"])["pid"], signal.SIGKILL)
    task = _task_done(http, owner, task_id)
    assert task["status"] == "failed" and "process stopped" in task["error"]
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 0
    again = http.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"], "payload": {"seconds": 0}})
    assert _task_done(http, owner, again.json()["id"])["status"] == "completed"
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_undeploying_queues_the_agents_unstarted_tasks_again(http, owner) -> None:
    agent = _deployed(http, owner, mode="external", max_concurrent_tasks=2)
    first = http.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"]}).json()
    second = http.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"]}).json()
    http.patch(f"/api/v1/tasks/{second['id']}/status?status=in_progress", headers=owner)
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)
    queued = http.get(f"/api/v1/tasks/{first['id']}", headers=owner).json()
    assert queued["status"] == "pending" and queued["agent_id"] is None
    started = http.get(f"/api/v1/tasks/{second['id']}", headers=owner).json()
    assert started["status"] == "failed" and started["error"] == "the agent was undeployed"
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 0
