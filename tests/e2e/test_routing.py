"""The task router over HTTP against the live platform: routing by type and priority, capacity, a router
killed mid-load losing nothing, and events reaching the Redis stream."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time

import httpx
import pytest
import redis

from tests.conftest import REDIS_ENV
from tests.e2e.test_agent_actors import AGENTS, _deployed, _eventually
from tests.platform_fixtures import Platform

TASKS = "/api/v1/tasks"
APPROVALS = "/api/v1/approvals"


def _pending_then_assigned(http: httpx.Client, headers: dict, task_id: str) -> dict:
    return _eventually(
        lambda: (t := http.get(f"{TASKS}/{task_id}", headers=headers).json())["status"] != "pending" and t,
        timeout_s=30,
        what=f"task {task_id} routed",
    )


def _finish(http: httpx.Client, headers: dict, task_id: str) -> None:
    response = http.patch(f"{TASKS}/{task_id}/status", headers=headers, json={"status": "completed"})
    assert response.status_code == 200, response.text


def test_tasks_are_routed_by_type_to_the_matching_agent(http, owner, approver) -> None:
    ops = _deployed(http, owner, mode="external", type="ops", max_concurrent_tasks=5)
    dev = _deployed(http, owner, mode="external", type="dev", max_concurrent_tasks=5)
    incident = http.post(TASKS, headers=owner, json={"type": "incident", "priority": "P2"}).json()
    bugfix = http.post(TASKS, headers=owner, json={"type": "bugfix", "priority": "P2"}).json()
    assert incident["status"] == "pending"  # stored first, then routed by the router actor
    assert _pending_then_assigned(http, owner, incident["id"])["agent_id"] == ops["id"]
    assert _pending_then_assigned(http, owner, bugfix["id"])["agent_id"] == dev["id"]
    # A rule stored with PUT /routing/rules reaches the live router at once.
    rules = {"rules": {"triage": {"types": ["ops"]}}}
    assert http.put("/api/v1/routing/rules", headers=approver, json=rules).status_code == 200
    triage = http.post(TASKS, headers=owner, json={"type": "triage"}).json()
    assert _pending_then_assigned(http, owner, triage["id"])["agent_id"] == ops["id"]
    http.put("/api/v1/routing/rules", headers=approver, json={"rules": {}})
    for task in (incident, bugfix, triage):
        _finish(http, owner, task["id"])
    for agent in (ops, dev):
        http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_a_p0_is_not_delayed_by_a_flood_of_p3_and_capacity_is_respected(http, owner, approver) -> None:
    agent = _deployed(http, owner, mode="external", type="dev", max_concurrent_tasks=1)
    flood = [http.post(TASKS, headers=owner, json={"type": "feature", "priority": "P3"}).json() for _ in range(15)]
    first = _eventually(
        lambda: [
            t
            for t in http.get(f"{AGENTS}/{agent['id']}/tasks", headers=owner, params={"status": "active"}).json()[
                "tasks"
            ]
        ],
        what="one task assigned",
    )
    assert len(first) == 1  # capacity 1: only one of the flood is assigned
    critical = http.post(TASKS, headers=owner, json={"type": "bugfix", "priority": "P0"}).json()
    assert critical["status"] == "awaiting_approval"  # P0 work waits for a human first
    [approval] = [
        a
        for a in http.get(f"{APPROVALS}/pending", headers=approver).json()["approvals"]
        if a["task_id"] == critical["id"]
    ]
    assert http.post(f"{APPROVALS}/{approval['id']}/approve", headers=approver).json()["status"] == "approved"
    time.sleep(1.5)  # routing ticks pass: the P0 must still wait for the free slot, not jump capacity
    assert http.get(f"{TASKS}/{critical['id']}", headers=owner).json()["status"] == "pending"
    _finish(http, owner, first[0]["id"])
    assert _pending_then_assigned(http, owner, critical["id"])["agent_id"] == agent["id"]  # next, before 14 P3s
    assigned = [t["id"] for t in flood if http.get(f"{TASKS}/{t['id']}", headers=owner).json()["status"] != "pending"]
    assert assigned == [first[0]["id"]]
    _finish(http, owner, critical["id"])
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def test_a_killed_router_rebuilds_from_the_database_without_loss_or_double_assignment(http, owner, platform) -> None:
    agent = _deployed(http, owner, mode="external", type="dev", max_concurrent_tasks=50)
    [router] = platform.processes("ray::TaskRouter")
    created = []
    for index in range(30):
        created.append(http.post(TASKS, headers=owner, json={"type": "bugfix"}).json()["id"])
        if index == 10:
            os.kill(router.pid, signal.SIGKILL)

    def all_assigned() -> list[dict] | None:
        current = [http.get(f"{TASKS}/{task_id}", headers=owner).json() for task_id in created]
        return current if all(task["status"] == "assigned" for task in current) else None

    tasks = _eventually(all_assigned, timeout_s=90, what="every task assigned after the router restarted")
    assert {task["agent_id"] for task in tasks} == {agent["id"]}
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 30  # each counted once
    for task_id in created:
        _finish(http, owner, task_id)
    assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 0
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


@pytest.mark.skipif(not os.environ.get(REDIS_ENV), reason=f"needs {REDIS_ENV} (CI sets it)")
def test_events_reach_the_redis_stream(platform, http, owner) -> None:
    client = redis.Redis.from_url(platform.env["ORCHESTRATOR_REDIS_URL"])  # the platform's own server
    stream = f"{platform.env['ORCHESTRATOR_REDIS_KEY_PREFIX']}events"
    marker = f"e2e.marker_{secrets.token_hex(4)}"
    published = http.post("/api/v1/events/publish", headers=owner, json={"event_type": marker, "payload": {"n": 1}})
    event_id = published.json()["event_id"]

    def in_stream() -> dict | None:
        for _, fields in client.xrange(stream, "-", "+"):
            message = json.loads(fields[b"event"])
            if message["id"] == event_id:
                return message
        return None

    message = _eventually(in_stream, timeout_s=30, what="the event in the Redis stream")
    assert message["type"] == marker and message["data"] == {"n": 1} and message["timestamp"].endswith("Z")


def _approval_processes(platform: Platform) -> int:
    return len(platform.processes("ApprovalActor"))


def test_approvals_hold_no_process_while_pending_and_decide_through_their_actor(
    http, owner, approver, platform
) -> None:
    agent = _deployed(http, owner, mode="external", type="ops", max_concurrent_tasks=5)
    gated = [http.post(TASKS, headers=owner, json={"type": "incident", "priority": p}).json() for p in ("P0", "P1")]
    assert [task["status"] for task in gated] == ["awaiting_approval", "awaiting_approval"]
    pending = {a["task_id"]: a for a in http.get(f"{APPROVALS}/pending", headers=owner).json()["approvals"]}
    assert set(pending) == {task["id"] for task in gated}
    # Pending approvals are rows (an earlier test's decided approval may still be releasing its actor).
    _eventually(lambda: _approval_processes(platform) == 0, timeout_s=30, what="no approval process while pending")

    own = http.post(f"{APPROVALS}/{pending[gated[0]['id']]['id']}/approve", headers=owner)
    assert own.status_code == 403 and own.json()["error"]["code"] == "AUTHORIZATION_ERROR"  # self-approval
    approved = http.post(f"{APPROVALS}/{pending[gated[0]['id']]['id']}/approve", headers=approver)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert _pending_then_assigned(http, owner, gated[0]["id"])["agent_id"] == agent["id"]
    rejected = http.post(
        f"{APPROVALS}/{pending[gated[1]['id']]['id']}/reject", headers=approver, params={"reason": "not now"}
    )
    assert rejected.json()["status"] == "rejected"
    task = http.get(f"{TASKS}/{gated[1]['id']}", headers=owner).json()
    assert task["status"] == "failed" and task["error"] == "rejected: not now"
    _eventually(lambda: _approval_processes(platform) == 0, timeout_s=30, what="approval actors released")
    _finish(http, owner, gated[0]["id"])
    http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)
