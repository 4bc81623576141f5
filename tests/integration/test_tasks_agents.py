"""Tasks as agents see them, on each real database: direct assignment, status reports from workers, an
agent's queue, its metrics computed from recorded tasks, and the load counter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from persistence.db import Database
from persistence.models import Agent, Event, Task
from tests.integration.test_agents import _agent, _user
from tests.integration.test_auth_flow import assert_error

TASKS, AGENTS = "/api/v1/tasks", "/api/v1/agents"


def _active(db: Database, agent_id: str, **values) -> None:
    with db.transaction() as session:
        session.execute(update(Agent).where(Agent.id == agent_id).values(status="active", **values))


def _task(client: TestClient, headers: dict, **body) -> dict:
    response = client.post(TASKS, headers=headers, json={"type": "bugfix", **body})
    assert response.status_code == 201, response.text
    return response.json()


def _load(client: TestClient, headers: dict, agent_id: str) -> int:
    return client.get(f"{AGENTS}/{agent_id}", headers=headers).json()["current_tasks"]


@pytest.fixture
def worker(client: TestClient, db: Database) -> tuple[dict, dict]:
    owner = _user(client, "worker")
    agent = _agent(client, owner, mode="external", max_concurrent_tasks=2)
    _active(db, agent["id"])
    return owner, agent


def test_a_task_created_for_an_external_agent_is_pulled_and_reported_by_its_worker(client, db, worker) -> None:
    owner, agent = worker
    task = _task(
        client,
        owner,
        agentId=agent["id"],
        priority="medium",
        payload={"issue": "123"},
        metadata={"repo": "orchestrator"},
    )
    assert task["status"] == "assigned" and task["task_id"] == task["id"] and task["assigned_agent"] == agent["id"]
    assert task["priority"] == "P2" and task["title"] == "bugfix" and task["metadata"] == {"repo": "orchestrator"}
    assert client.get(f"{TASKS}/{task['id']}", headers=owner).json()["assigned_at"]
    assert _load(client, owner, agent["id"]) == 1

    queue = client.get(f"{AGENTS}/{agent['id']}/tasks?status=assigned", headers=owner).json()
    assert [item["id"] for item in queue["tasks"]] == [task["id"]] and queue["pagination"]["total"] == 1

    started = client.patch(f"{TASKS}/{task['id']}/status?status=in_progress", headers=owner)
    assert started.status_code == 200 and started.json()["status"] == "in_progress"
    assert client.get(f"{AGENTS}/{agent['id']}/tasks?status=assigned", headers=owner).json()["tasks"] == []
    assert len(client.get(f"{AGENTS}/{agent['id']}/tasks?status=active", headers=owner).json()["tasks"]) == 1
    done = client.patch(
        f"{TASKS}/{task['id']}/status", headers=owner, json={"status": "COMPLETED", "result": {"pr": 42}}
    )
    assert done.json()["task"]["result"] == {"pr": 42} and done.json()["task"]["progress"] == 1.0
    assert _load(client, owner, agent["id"]) == 0

    again = client.patch(f"{TASKS}/{task['id']}/status?status=in_progress", headers=owner)
    assert_error(again, 409, "INVALID_TRANSITION")
    with db.session() as session:
        kinds = [
            e.event_type
            for e in session.scalars(
                select(Event).where(Event.subject_id == task["id"]).order_by(Event.created_at, Event.id)
            )
        ]
    assert kinds == ["task.created", "task.assigned", "task.updated", "task.completed"]


def test_failed_reports_keep_the_error_and_free_the_agent(client, worker) -> None:
    owner, agent = worker
    task = _task(client, owner, agent_id=agent["id"])
    failed = client.patch(f"{TASKS}/{task['id']}/status?status=failed&error=build%20broke", headers=owner)
    assert failed.json()["task"]["error"] == "build broke" and failed.json()["status"] == "failed"
    assert _load(client, owner, agent["id"]) == 0


@pytest.mark.parametrize(
    ("setup", "message"),
    [({"status": "draft"}, "deploy it"), ({"is_active": False}, "disabled"), ({"current_tasks": 2}, "limit")],
)
def test_assignment_needs_an_enabled_deployed_agent_with_capacity(client, db, worker, setup, message) -> None:
    owner, agent = worker
    with db.transaction() as session:
        session.execute(update(Agent).where(Agent.id == agent["id"]).values(**setup))
    error = assert_error(client.post(TASKS, headers=owner, json={"agentId": agent["id"]}), 409, "CONFLICT")
    assert message in error["message"]
    with db.session() as session:
        assert session.scalar(select(Task).where(Task.agent_id == agent["id"])) is None  # nothing half-stored


def test_tasks_and_agents_of_other_tenants_are_invisible(client, worker) -> None:
    owner, agent = worker
    stranger = _user(client, "stranger")
    task = _task(client, owner)
    assert_error(client.get(f"{TASKS}/{task['id']}", headers=stranger), 404, "NOT_FOUND")
    assert_error(client.patch(f"{TASKS}/{task['id']}/status?status=cancelled", headers=stranger), 404, "NOT_FOUND")
    assert_error(client.post(TASKS, headers=stranger, json={"agentId": agent["id"]}), 404, "NOT_FOUND")
    assert_error(client.get(f"{AGENTS}/{agent['id']}/tasks", headers=stranger), 404, "NOT_FOUND")
    assert_error(client.get(f"{AGENTS}/{agent['id']}/metrics", headers=stranger), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": "P7"}, "priority"),
        ({"type": "Not A Type!"}, "type"),
        ({"dueDate": "next tuesday"}, "due_date"),
        ({"slaTarget": 0}, "sla_target"),
    ],
)
def test_invalid_task_input_is_named(client, worker, body, field) -> None:
    owner, _ = worker
    error = assert_error(client.post(TASKS, headers=owner, json=body), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == field


def test_metrics_are_computed_from_the_agents_recorded_tasks(client, db, worker) -> None:
    owner, agent = worker
    ids = [_task(client, owner)["id"] for _ in range(5)]
    base = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    timeline = [  # (status, assigned, started, completed) — minutes after base
        ("completed", 0, 1, 61),
        ("completed", 0, 2, 122),
        ("failed", 0, 3, 33),
        ("cancelled", 0, None, 5),
        ("in_progress", 0, 4, None),
    ]
    with db.transaction() as session:
        for task_id, (status, assigned, started, completed) in zip(ids, timeline, strict=True):
            at = lambda minutes: None if minutes is None else base + timedelta(minutes=minutes)  # noqa: E731
            session.execute(
                update(Task)
                .where(Task.id == task_id)
                .values(
                    agent_id=agent["id"],
                    status=status,
                    created_at=base,
                    assigned_at=at(assigned),
                    started_at=at(started),
                    completed_at=at(completed),
                )
            )
    period = {"startDate": "2026-11-20T00:00:00Z", "endDate": "2026-11-21T00:00:00Z"}
    metrics = client.get(f"{AGENTS}/{agent['id']}/metrics", headers=owner, params=period).json()
    tasks = metrics["task_metrics"]
    assert (tasks["total_tasks"], tasks["completed_tasks"], tasks["failed_tasks"], tasks["cancelled_tasks"]) == (
        5,
        2,
        1,
        1,
    )
    assert tasks["in_progress_tasks"] == 1 and tasks["success_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert tasks["average_completion_time"] == pytest.approx(1.5, abs=1e-3)  # hours: (60 + 120) / 2 minutes
    assert metrics["performance_metrics"]["average_response_time"] == pytest.approx(150, abs=0.5)  # 2.5 min
    usage = metrics["utilization_metrics"]
    assert usage["total_hours"] == 24 and usage["active_hours"] == pytest.approx(3.5, abs=1e-3)  # 60+120+30 min
    assert usage["peak_hours"] == ["10:00-11:00"]
    assert metrics["performance_metrics"]["quality_score"] is None  # not recorded, so not invented
    before = {"start_date": "2020-01-01T00:00:00Z", "end_date": "2020-01-02T00:00:00Z"}
    empty = client.get(f"{AGENTS}/{agent['id']}/metrics", headers=owner, params=before).json()
    assert empty["task_metrics"]["total_tasks"] == 0 and empty["task_metrics"]["success_rate"] is None
    backwards = {"start_date": before["end_date"], "end_date": before["start_date"]}
    assert_error(
        client.get(f"{AGENTS}/{agent['id']}/metrics", headers=owner, params=backwards), 422, "VALIDATION_ERROR"
    )


def test_status_reports_are_validated_and_limited_to_what_a_worker_reports(client, worker) -> None:
    owner, agent = worker
    task = _task(client, owner, agent_id=agent["id"])
    for query in ("", "?status=bogus"):
        error = assert_error(
            client.patch(f"{TASKS}/{task['id']}/status{query}", headers=owner), 422, "VALIDATION_ERROR"
        )
        assert error["details"][0]["field"] == "status"
    error = assert_error(
        client.patch(f"{TASKS}/{task['id']}/status?status=awaiting_approval", headers=owner), 422, "VALIDATION_ERROR"
    )
    assert "cannot be reported" in error["message"]
    assert client.get(f"{TASKS}/{task['id']}", headers=owner).json()["status"] == "assigned"  # unchanged


def test_on_a_shared_agent_a_tenant_sees_only_its_own_tasks(client, db) -> None:
    admin = _user(client, "admin")
    alice, bob = _user(client, "alice"), _user(client, "bob")
    shared = _agent(client, admin, isPublic=True, max_concurrent_tasks=5)
    _active(db, shared["id"])
    mine = _task(client, alice, agentId=shared["id"], payload={"secret": "alice's"})
    theirs = _task(client, bob, agentId=shared["id"])
    seen = client.get(f"{AGENTS}/{shared['id']}/tasks", headers=alice).json()["tasks"]
    assert [task["id"] for task in seen] == [mine["id"]]
    assert {task["id"] for task in client.get(f"{AGENTS}/{shared['id']}/tasks", headers=admin).json()["tasks"]} == {
        mine["id"],
        theirs["id"],
    }
    assert_error(client.get(f"{AGENTS}/{shared['id']}/container/logs", headers=alice), 403, "AUTHORIZATION_ERROR")


def test_the_task_list_filters_searches_and_sorts(client, db, worker) -> None:
    stranger, _ = worker  # the first account: a platform admin, who sees every task
    owner = _user(client, "lister")
    agent = _agent(client, owner, max_concurrent_tasks=2)
    _active(db, agent["id"])
    login_fix = _task(client, owner, title="Fix login", priority="low", tags=["auth"], type="bugfix")
    dashboard = _task(
        client,
        owner,
        title="Build dashboard",
        description="analytics",
        priority="P2",
        tags=["frontend", "analytics"],
        type="feature",
        agentId=agent["id"],
    )
    docs = _task(client, owner, title="Write docs", priority=5, type="documentation")
    others = _task(client, stranger, title="Not yours")

    def ids(**params) -> list[str]:
        response = client.get(TASKS, headers=owner, params=params)
        assert response.status_code == 200, response.text
        return [task["id"] for task in response.json()["tasks"]]

    assert ids() == [docs["id"], dashboard["id"], login_fix["id"]]  # newest first, only mine
    assert ids(status="assigned") == ids(status="active") == ids(agentId=agent["id"]) == [dashboard["id"]]
    assert ids(status="pending", priority="P3,critical") == [login_fix["id"]]
    assert ids(type="bugfix") == [login_fix["id"]] and ids(tags="frontend,analytics") == [dashboard["id"]]
    assert ids(search="ANALYTICS") == [dashboard["id"]] and ids(search="docs") == [docs["id"]]
    assert ids(sortBy="priority") == [dashboard["id"], docs["id"], login_fix["id"]]  # most urgent first
    assert ids(sort_by="title", sort_order="asc") == [dashboard["id"], login_fix["id"], docs["id"]]
    assert ids(createdAfter="2999-01-01T00:00:00Z") == []
    assert_error(client.get(TASKS, headers=owner, params={"status": "sleeping"}), 422, "VALIDATION_ERROR")
    assert_error(client.get(TASKS, headers=owner, params={"sort_by": "secret"}), 422, "VALIDATION_ERROR")
    assert others["id"] in [task["id"] for task in client.get(TASKS, headers=stranger).json()["tasks"]]


def test_tasks_update_assign_history_and_delete(client, db, worker) -> None:
    owner, agent = worker
    task = _task(client, owner, title="Draft")
    updated = client.patch(
        f"{TASKS}/{task['id']}", headers=owner, json={"title": "Final", "priority": "low", "metadata": {"k": 1}}
    )
    assert updated.status_code == 200 and updated.json()["title"] == "Final" and updated.json()["priority"] == "P3"
    assert updated.json()["metadata"] == {"k": 1}
    assert_error(client.put(f"{TASKS}/{task['id']}", headers=owner, json={"title": None}), 422, "VALIDATION_ERROR")
    assigned = client.post(f"{TASKS}/{task['id']}/assign", headers=owner, json={"agentId": agent["id"]})
    assert assigned.status_code == 200 and assigned.json()["status"] == "assigned"
    assert_error(
        client.post(f"{TASKS}/{task['id']}/assign", headers=owner, json={"agentId": agent["id"]}), 409, "CONFLICT"
    )
    assert_error(client.patch(f"{TASKS}/{task['id']}", headers=owner, json={"payload": {"x": 1}}), 409, "CONFLICT")
    done = client.put(f"{TASKS}/{task['id']}", headers=owner, json={"status": "done", "actualHours": 2})
    assert done.json()["status"] == "completed" and done.json()["actual_hours"] == 2
    detail = client.get(f"{TASKS}/{task['id']}?include=history,metrics", headers=owner).json()
    actions = [(entry["action"], entry["from"], entry["to"]) for entry in detail["history"]]
    assert actions == [
        ("created", None, "pending"),
        ("updated", None, "pending"),
        ("assigned", "pending", "assigned"),
        ("completed", "assigned", "completed"),
    ]
    assert detail["metrics"]["completion_rate"] == 1.0 and detail["metrics"]["wait_time"] is not None
    assert_error(client.get(f"{TASKS}/{task['id']}?include=bogus", headers=owner), 422, "VALIDATION_ERROR")
    assert client.delete(f"{TASKS}/{task['id']}?reason=obsolete", headers=owner).json()["message"]
    assert_error(client.get(f"{TASKS}/{task['id']}", headers=owner), 404, "NOT_FOUND")
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 0


def test_routing_rules_show_the_defaults_and_admins_replace_them(client) -> None:
    admin = _user(client, "rules-admin")
    writer = _user(client, "rules-writer")
    assert_error(client.get("/api/v1/routing/rules", headers=writer), 403, "AUTHORIZATION_ERROR")  # admin only
    rules = client.get("/api/v1/routing/rules", headers=admin).json()
    assert rules["rules"]["bugfix"]["types"] == ["coding", "dev"] and rules["rules"]["incident"]["types"] == ["ops"]
    assert_error(client.put("/api/v1/routing/rules", headers=writer, json={"rules": {}}), 403, "AUTHORIZATION_ERROR")
    replaced = client.put(
        "/api/v1/routing/rules",
        headers=admin,
        json={"rules": {"bugfix": {"types": ["Frontend"], "capabilities": ["react"]}, "triage": {"tags": ["oncall"]}}},
    )
    assert replaced.status_code == 200, replaced.text
    after = client.get("/api/v1/routing/rules", headers=admin).json()["rules"]
    assert after["bugfix"] == {"types": ["frontend"], "capabilities": ["react"], "tags": []}
    assert after["triage"]["tags"] == ["oncall"] and after["incident"]["types"] == ["ops"]  # others keep defaults
    bad = client.put("/api/v1/routing/rules", headers=admin, json={"rules": {"Not A Type": {}}})
    assert_error(bad, 422, "VALIDATION_ERROR")
    assert client.get("/api/v1/routing/rules", headers=admin).json()["rules"]["bugfix"]["types"] == ["frontend"]
    # A selector is "role/type, capabilities, tags": a role or type given alone is the type list; a key
    # the selector does not know is refused rather than read as "any agent".
    selectors = {"bugfix": {"type": "Dev"}, "incident": {"role": ["ops"]}}
    single = client.put("/api/v1/routing/rules", headers=admin, json={"rules": selectors})
    assert single.status_code == 200, single.text
    stored = single.json()["rules"]
    assert stored["bugfix"]["types"] == ["dev"] and stored["incident"]["types"] == ["ops"]
    unknown = client.put("/api/v1/routing/rules", headers=admin, json={"rules": {"bugfix": {"agent": "dev"}}})
    assert_error(unknown, 422, "VALIDATION_ERROR")
    assert client.get("/api/v1/routing/rules", headers=admin).json()["rules"]["bugfix"]["types"] == ["dev"]


def test_an_empty_agent_id_is_absent_and_an_unstorable_value_is_a_422(
    client: TestClient, db: Database, database_url: str
) -> None:
    owner = _user(client, "creator")
    for blank in ("", None):
        task = _task(client, owner, agentId=blank)
        assert task["status"] == "pending" and task["agent_id"] is None
    response = client.post(TASKS, headers=owner, json={"type": "bugfix", "title": "nul\u0000byte"})
    if database_url.startswith("postgresql"):  # text cannot hold NUL there (SQLite stores it)
        assert_error(response, 422, "VALIDATION_ERROR")
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Task)) == 2  # nothing else written
    else:
        assert response.status_code == 201


def test_times_given_with_an_offset_come_back_in_utc_at_once(client) -> None:
    owner = _user(client, "zoned")
    created = client.post(TASKS, headers=owner, json={"title": "tz", "dueDate": "2024-02-20T02:00:00+02:00"})
    assert created.status_code == 201, created.text
    assert created.json()["due_date"] == "2024-02-20T00:00:00Z"
    patched = client.patch(
        f"{TASKS}/{created.json()['id']}", headers=owner, json={"due_date": "2024-03-01T10:00:00-05:00"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["due_date"] == "2024-03-01T15:00:00Z"
    assert client.get(f"{TASKS}/{created.json()['id']}", headers=owner).json()["due_date"] == "2024-03-01T15:00:00Z"
    project = client.post(
        "/api/v1/projects", headers=owner, json={"name": "zoned", "startDate": "2024-02-01T00:00:00+01:00"}
    )
    assert project.status_code == 201, project.text
    assert project.json()["start_date"] == "2024-01-31T23:00:00Z"


def test_a_time_without_a_zone_or_a_date_alone_is_taken_as_utc(client) -> None:
    owner = _user(client, "naive")
    created = client.post(TASKS, headers=owner, json={"title": "naive", "dueDate": "2024-02-20T08:30:00"})
    assert created.status_code == 201, created.text
    assert created.json()["due_date"] == "2024-02-20T08:30:00Z"
    dated = client.post(TASKS, headers=owner, json={"title": "dated", "dueDate": "2024-02-25"})
    assert dated.json()["due_date"] == "2024-02-25T00:00:00Z"
    # Query filters too: a date alone is its midnight in UTC.
    listed = client.get(f"{TASKS}?createdAfter=2000-01-01&createdBefore=2999-12-31", headers=owner)
    assert listed.status_code == 200, listed.text
    assert {task["title"] for task in listed.json()["tasks"]} == {"naive", "dated"}
    assert client.get(f"{TASKS}?createdAfter=2999-01-01", headers=owner).json()["tasks"] == []
    runs = client.get("/api/v1/executions?start_date=2024-12-19&end_date=2024-12-20T10:00:00", headers=owner)
    assert runs.status_code == 200, runs.text


def test_the_sort_field_takes_seed_003s_camel_case_names(client) -> None:
    owner = _user(client, "sorter")
    for title, due in (("later", "2024-05-01T00:00:00Z"), ("sooner", "2024-04-01T00:00:00Z")):
        assert client.post(TASKS, headers=owner, json={"title": title, "dueDate": due}).status_code == 201
    for sort_by in ("dueDate", "due_date"):
        listed = client.get(TASKS, headers=owner, params={"sortBy": sort_by, "sortOrder": "asc"})
        assert listed.status_code == 200, listed.text
        assert [task["title"] for task in listed.json()["tasks"]] == ["sooner", "later"]
    newest = client.get(TASKS, headers=owner, params={"sortBy": "createdAt", "sortOrder": "desc"}).json()["tasks"]
    assert [task["title"] for task in newest] == ["sooner", "later"]
    assert_error(client.get(TASKS, headers=owner, params={"sortBy": "password"}), 422, "VALIDATION_ERROR")
