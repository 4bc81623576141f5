"""Human approvals on each real database (in process, decisions applied directly; the e2e suite runs
them through the approval actors): P0/P1 gating, approve, reject, self-approval, expiry, tenancy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from core.clock import utcnow
from persistence.db import Database
from persistence.models import Agent, Approval
from serve_app.app import create_app
from services import approvals
from tests.conftest import make_settings
from tests.integration.test_agents import _agent, _user
from tests.integration.test_auth_flow import assert_error

TASKS, APPROVALS = "/api/v1/tasks", "/api/v1/approvals"


@pytest.fixture
def team(client: TestClient, db: Database) -> dict:
    """An admin, two members of one organization (requester, approver) with a deployed agent, a stranger."""
    admin = _user(client, "admin")
    requester, approver, stranger = _user(client, "requester"), _user(client, "approver"), _user(client, "stranger")
    org = client.post("/api/v1/organizations", headers=requester, json={"name": "Ops"}).json()
    client.post(f"/api/v1/organizations/{org['id']}/members", headers=requester, json={"email": "approver@example.com"})
    agent = _agent(client, requester, ownerType="organization", ownerId=org["id"], max_concurrent_tasks=5)
    with db.transaction() as session:
        session.execute(update(Agent).where(Agent.id == agent["id"]).values(status="active"))
    return {
        "admin": admin,
        "requester": requester,
        "approver": approver,
        "stranger": stranger,
        "org": org,
        "agent": agent,
    }


def _org_task(client: TestClient, team: dict, **body) -> dict:
    response = client.post(
        TASKS,
        headers=team["requester"],
        json={"type": "deployment", "ownerType": "organization", "ownerId": team["org"]["id"], **body},
    )
    assert response.status_code == 201, response.text
    return response.json()


def _pending(client: TestClient, headers: dict) -> list[dict]:
    response = client.get(f"{APPROVALS}/pending", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["approvals"]


def test_p0_and_p1_tasks_wait_for_a_human_and_approval_releases_them(client, team) -> None:
    task = _org_task(client, team, priority="critical", agentId=team["agent"]["id"])
    assert task["status"] == "awaiting_approval" and task["agent_id"] is None
    assert _org_task(client, team, priority="P2")["status"] == "pending"  # below the gate
    [approval] = [a for a in _pending(client, team["approver"]) if a["task_id"] == task["id"]]
    assert approval["approval_id"] == approval["id"] and approval["priority"] == "P0"

    own = client.post(f"{APPROVALS}/{approval['id']}/approve", headers=team["requester"])
    assert_error(own, 403, "AUTHORIZATION_ERROR")  # the requester cannot approve their own request
    decided = client.post(f"{APPROVALS}/{approval['id']}/approve", headers=team["approver"])
    assert decided.status_code == 200 and decided.json()["status"] == "approved"
    released = client.get(f"{TASKS}/{task['id']}", headers=team["requester"]).json()
    assert released["status"] == "assigned" and released["agent_id"] == team["agent"]["id"]  # the agent it was for
    stored = client.get(f"{APPROVALS}/{approval['id']}", headers=team["requester"]).json()
    assert stored["approved_by"] and stored["approved_at"] and stored["status"] == "approved"
    # Also as `{success, approval: {approval_id, task_id, status, approved_by, approved_at}}`, as other clients read it.
    assert stored["success"] is True and stored["approval"] == {
        "approval_id": approval["id"],
        "task_id": task["id"],
        "status": "approved",
        "approved_by": stored["approved_by"],
        "approved_at": stored["approved_at"],
    }
    assert_error(client.post(f"{APPROVALS}/{approval['id']}/reject", headers=team["approver"]), 409, "CONFLICT")
    history = client.get(f"{APPROVALS}/history", headers=team["approver"]).json()
    assert [h["id"] for h in history["history"]] == [approval["id"]] and history["count"] == 1
    assert history["pagination"]["total"] == 1 and history["links"]["next"] is None  # the list envelope


def test_rejection_fails_the_task_with_the_reason(client, team) -> None:
    task = _org_task(client, team, priority="P1")
    [approval] = _pending(client, team["approver"])
    rejected = client.post(f"{APPROVALS}/{approval['id']}/reject?reason=Security%20concerns", headers=team["approver"])
    assert rejected.json()["status"] == "rejected" and rejected.json()["message"].startswith("Rejected by")
    stored = client.get(f"{TASKS}/{task['id']}", headers=team["requester"]).json()
    assert stored["status"] == "failed" and stored["error"] == "rejected: Security concerns"


def test_a_priority_raised_into_the_gate_waits_for_a_human_as_at_creation(client, team) -> None:
    task = _org_task(client, team, priority="low")
    raised = client.patch(f"{TASKS}/{task['id']}", headers=team["requester"], json={"priority": "high"})
    assert raised.status_code == 200, raised.text
    assert (raised.json()["priority"], raised.json()["status"]) == ("P1", "awaiting_approval")
    [approval] = [a for a in _pending(client, team["approver"]) if a["task_id"] == task["id"]]
    # Moving it within the gate asks nothing new; the one decision releases it.
    again = client.patch(f"{TASKS}/{task['id']}", headers=team["requester"], json={"priority": "P0"})
    assert again.json()["status"] == "awaiting_approval"
    assert [a["id"] for a in _pending(client, team["approver"]) if a["task_id"] == task["id"]] == [approval["id"]]
    own = client.post(f"{APPROVALS}/{approval['id']}/approve", headers=team["requester"])
    assert "another member of the owning organization" in assert_error(own, 403, "AUTHORIZATION_ERROR")["message"]
    decided = client.post(f"{APPROVALS}/{approval['id']}/approve", headers=team["approver"])
    assert decided.status_code == 200, decided.text
    assert client.get(f"{TASKS}/{task['id']}", headers=team["requester"]).json()["status"] != "awaiting_approval"


def test_other_tenants_cannot_see_or_decide(client, team) -> None:
    _org_task(client, team, priority="P0")
    [approval] = _pending(client, team["approver"])
    assert _pending(client, team["stranger"]) == []
    for path in (f"{APPROVALS}/{approval['id']}",):
        assert_error(client.get(path, headers=team["stranger"]), 404, "NOT_FOUND")
    assert_error(client.post(f"{APPROVALS}/{approval['id']}/approve", headers=team["stranger"]), 404, "NOT_FOUND")
    assert [a["id"] for a in _pending(client, team["admin"])] == [approval["id"]]  # admins see all


def test_an_expired_approval_fails_its_task(client, db, team, settings) -> None:
    task = _org_task(client, team, priority="P0")
    [approval] = _pending(client, team["approver"])
    with db.transaction() as session:
        session.execute(update(Approval).values(expires_at=utcnow() - timedelta(seconds=1)))
    with db.transaction() as session:
        assert approvals.expire_due(session, settings) == [approval["id"]]
    assert client.get(f"{APPROVALS}/{approval['id']}", headers=team["approver"]).json()["status"] == "expired"
    stored = client.get(f"{TASKS}/{task['id']}", headers=team["requester"]).json()
    assert stored["status"] == "failed" and stored["error"] == "approval expired"
    assert_error(client.post(f"{APPROVALS}/{approval['id']}/approve", headers=team["approver"]), 409, "CONFLICT")


def test_with_escalation_an_expired_approval_becomes_critical_once(tmp_path: Path, db, database_url) -> None:
    settings = make_settings(tmp_path, database_url, agents={"approval_on_expiry": "escalate"})
    with TestClient(create_app(settings)) as client:
        _user(client, "admin")
        owner = _user(client, "owner")
        task = client.post(TASKS, headers=owner, json={"priority": "P1"}).json()
        [approval] = _pending(client, owner)
        for expected in ("pending", "expired"):
            with db.transaction() as session:
                session.execute(update(Approval).values(expires_at=utcnow() - timedelta(seconds=1)))
            with db.transaction() as session:
                approvals.expire_due(session, settings)
            assert client.get(f"{APPROVALS}/{approval['id']}", headers=owner).json()["status"] == expected
            if expected == "pending":
                assert client.get(f"{TASKS}/{task['id']}", headers=owner).json()["priority"] == "P0"
        assert client.get(f"{TASKS}/{task['id']}", headers=owner).json()["status"] == "failed"


def test_a_free_standing_request_and_gating_an_existing_task(client, team) -> None:
    created = client.post(
        APPROVALS,
        headers=team["requester"],
        json={
            "reason": "Ship on Friday?",
            "priority": "high",
            "ownerType": "organization",
            "ownerId": team["org"]["id"],
        },
    )
    assert created.status_code == 201 and created.json()["priority"] == "P1" and created.json()["task_id"] is None
    task = _org_task(client, team, priority="P3")
    gated = client.post(APPROVALS, headers=team["requester"], json={"taskId": task["id"], "expiresIn": 60})
    assert gated.status_code == 201
    assert client.get(f"{TASKS}/{task['id']}", headers=team["requester"]).json()["status"] == "awaiting_approval"
    assert_error(client.post(APPROVALS, headers=team["requester"], json={"taskId": task["id"]}), 409, "CONFLICT")
    assert_error(client.post(APPROVALS, headers=team["stranger"], json={"taskId": task["id"]}), 404, "NOT_FOUND")
