"""Projects, on each real database: CRUD, a team whose members see the project and its tasks,
figures derived from the tasks, and tenancy."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from persistence.models import Event, Task
from tests.integration.test_agents import _user
from tests.integration.test_auth_flow import assert_error

PROJECTS, TASKS = "/api/v1/projects", "/api/v1/tasks"


def _id(client: TestClient, headers: dict) -> str:
    return client.get("/api/v1/users/me", headers=headers).json()["id"]


def _project(client: TestClient, headers: dict, **body) -> dict:
    response = client.post(PROJECTS, headers=headers, json={"name": "E-commerce Platform", **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_project_counts_its_tasks_and_reports_progress(client, db) -> None:
    _user(client, "root")
    alice, bob = _user(client, "alice"), _user(client, "bob")
    bob_id = _id(client, bob)
    project = _project(
        client,
        alice,
        description="Full-featured shop",
        priority="high",
        startDate="2024-01-01T00:00:00Z",
        endDate="2024-03-31T23:59:59Z",
        budget={"hours": 500, "cost": 75000},
        teamMembers=[{"userId": bob_id, "role": "developer", "permissions": ["tasks:read"]}],
        tags=["web"],
    )
    assert (
        project["priority"] == "P1"
        and project["status"] == "active"
        and project["budget"] == {"hours": 500, "cost": 75000}
    )
    assert project["team_size"] == 2 and {m["role"] for m in project["members"]} == {"owner", "developer"}
    assert project["progress"] == 0.0 and project["task_count"]["total"] == 0

    made = [
        client.post(TASKS, headers=alice, json={"type": "feature", "projectId": project["id"], "title": f"t{i}"})
        for i in range(4)
    ]
    assert all(response.status_code == 201 for response in made)
    ids = [response.json()["id"] for response in made]
    client.patch(f"{TASKS}/{ids[0]}", headers=alice, json={"status": "cancelled"})
    with db.transaction() as session:  # as if agents had finished two of them
        session.execute(update(Task).where(Task.id.in_(ids[1:3])).values(status="completed"))
    detail = client.get(f"{PROJECTS}/{project['id']}", headers=alice).json()
    assert detail["task_count"] == {"total": 4, "completed": 2, "active": 0, "pending": 1, "failed": 0, "cancelled": 1}
    assert detail["progress"] == round(2 / 3, 4)

    # Bob is a member: he sees the project and all of its tasks, though they are Alice's.
    assert client.get(f"{PROJECTS}/{project['id']}", headers=bob).status_code == 200
    listed = client.get(f"{PROJECTS}/{project['id']}/tasks?sortBy=title&sortOrder=asc", headers=bob).json()
    assert [task["title"] for task in listed["tasks"]] == ["t0", "t1", "t2", "t3"]
    assert client.get(f"{TASKS}/{ids[3]}", headers=bob).status_code == 200
    pending = client.get(f"{PROJECTS}/{project['id']}/tasks?status=pending", headers=bob).json()
    assert [task["id"] for task in pending["tasks"]] == [ids[3]]
    assert client.get(f"{PROJECTS}?memberId={bob_id}", headers=bob).json()["pagination"]["total"] == 1
    # … but he may not change it.
    assert_error(client.put(f"{PROJECTS}/{project['id']}", headers=bob, json={"name": "x"}), 403, "AUTHORIZATION_ERROR")

    done = client.put(f"{PROJECTS}/{project['id']}", headers=alice, json={"status": "COMPLETED"})
    assert done.status_code == 200 and done.json()["status"] == "completed" and done.json()["completed_at"]
    with db.session() as session:
        kinds = [
            e.event_type
            for e in session.scalars(
                select(Event).where(Event.subject_id == project["id"]).order_by(Event.created_at, Event.id)
            )
        ]
    assert kinds == ["project.created", "project.completed"]


def test_members_are_added_changed_and_removed_by_the_owner(client) -> None:
    _user(client, "root")
    alice, bob = _user(client, "alice"), _user(client, "bob")
    bob_id = _id(client, bob)
    project = _project(client, alice)
    url = f"{PROJECTS}/{project['id']}/members"
    assert_error(client.get(f"{PROJECTS}/{project['id']}", headers=bob), 404, "NOT_FOUND")
    added = client.post(url, headers=alice, json={"userId": bob_id, "role": "developer"})
    assert added.status_code == 201 and added.json()["user_id"] == bob_id and added.json()["role"] == "developer"
    changed = client.post(url, headers=alice, json={"userId": bob_id, "role": "reviewer"})
    assert changed.status_code == 200 and changed.json()["role"] == "reviewer"
    assert client.get(f"{PROJECTS}/{project['id']}", headers=bob).json()["team_size"] == 2
    assert_error(client.post(url, headers=alice, json={"userId": "nobody"}), 422, "VALIDATION_ERROR")
    assert client.delete(f"{url}/{bob_id}", headers=alice).status_code == 200
    assert_error(client.delete(f"{url}/{bob_id}", headers=alice), 404, "NOT_FOUND")
    assert_error(client.get(f"{PROJECTS}/{project['id']}", headers=bob), 404, "NOT_FOUND")


def test_tasks_may_join_only_projects_their_creator_can_see(client) -> None:
    _user(client, "root")
    alice, eve = _user(client, "alice"), _user(client, "eve")
    project = _project(client, alice)
    refused = client.post(TASKS, headers=eve, json={"type": "feature", "projectId": project["id"]})
    assert assert_error(refused, 422, "VALIDATION_ERROR")["details"][0]["field"] == "project_id"
    task = client.post(TASKS, headers=eve, json={"type": "feature"}).json()
    moved = client.patch(f"{TASKS}/{task['id']}", headers=eve, json={"projectId": project["id"]})
    assert_error(moved, 422, "VALIDATION_ERROR")
    assert_error(client.get(f"{PROJECTS}/{project['id']}/tasks", headers=eve), 404, "NOT_FOUND")
    assert_error(client.delete(f"{PROJECTS}/{project['id']}", headers=eve), 404, "NOT_FOUND")
    assert client.get(PROJECTS, headers=eve).json()["projects"] == []


def test_deleting_a_project_keeps_its_tasks(client) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    project = _project(client, alice)
    task = client.post(TASKS, headers=alice, json={"type": "feature", "projectId": project["id"]}).json()
    deleted = client.delete(f"{PROJECTS}/{project['id']}", headers=alice)
    assert deleted.status_code == 200 and "1 task" in deleted.json()["message"]
    assert client.get(f"{TASKS}/{task['id']}", headers=alice).json()["project_id"] is None
    assert_error(client.get(f"{PROJECTS}/{project['id']}", headers=alice), 404, "NOT_FOUND")


def test_bad_project_input_is_refused_in_the_envelope(client) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    bad = [
        {"name": ""},
        {"name": "x", "status": "paused"},
        {"name": "x", "priority": "whenever"},
        {"name": "x", "startDate": "2024-02-01T00:00:00Z", "endDate": "2024-01-01T00:00:00Z"},
        {"name": "x", "startDate": "2024-02-31"},
        {"name": "x", "agents": ["no-such-agent"]},
    ]
    for body in bad:
        assert_error(client.post(PROJECTS, headers=alice, json=body), 422, "VALIDATION_ERROR")
    project = _project(client, alice, status="on_hold")
    assert project["status"] == "on-hold"
    assert_error(client.put(f"{PROJECTS}/{project['id']}", headers=alice, json={"name": None}), 422, "VALIDATION_ERROR")
    assert client.get(f"{PROJECTS}?status=on-hold&search=commerce", headers=alice).json()["pagination"]["total"] == 1
    assert_error(client.get(f"{PROJECTS}?status=paused", headers=alice), 422, "VALIDATION_ERROR")
