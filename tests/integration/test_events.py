"""The event bus over HTTP on each real database: publish, list with filters, tenancy, `/stats`."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.integration.test_agents import _agent, _user
from tests.integration.test_auth_flow import assert_error

EVENTS = "/api/v1/events"


def test_published_events_are_listed_with_every_filter(client: TestClient) -> None:
    owner = _user(client, "publisher")
    body = {
        "event_type": "deployment.completed",
        "source_agent": "ops_agent",
        "payload": {"service": "api"},
        "task_id": "task-1",
        "trace_id": "trace-9",
        "priority": "P2",
    }
    published = client.post(f"{EVENTS}/publish", headers=owner, json=body)
    assert published.status_code == 201, published.text
    event = published.json()["event"]
    assert published.json()["event_type"] == "deployment.completed" and published.json()["success"] is True
    assert event["payload"] == {"service": "api", "priority": "P2"} and event["source"] == "ops_agent"
    client.post(f"{EVENTS}/publish", headers=owner, json={"eventType": "task.started", "payload": {}})

    def ids(**params) -> list[str]:
        response = client.get(EVENTS, headers=owner, params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["events"]]

    assert event["source_agent"] == "ops_agent" and event["priority"] == "P2" and event["task_id"] == "task-1"
    assert ids(type="deployment.completed") == ids(event_type="deployment.completed") == [event["id"]]
    assert ids(eventType="deployment.completed") == ids(source_agent="ops_agent") == [event["id"]]  # older names
    assert ids(source="ops_agent") == ids(task_id="task-1") == ids(trace_id="trace-9") == [event["id"]]
    # An event about something other than a task has no task_id (its subject is the account, not a task).
    [registered] = client.get(EVENTS, headers=owner, params={"type": "user.registered"}).json()["events"]
    assert registered["task_id"] is None and registered["payload"]["user_id"]
    assert client.post("/api/v1/projects", headers=owner, json={"name": "evented"}).status_code == 201
    [project] = client.get(EVENTS, headers=owner, params={"type": "project.created"}).json()["events"]
    assert project["task_id"] is None
    assert len(ids()) == 4 and ids(since="2999-01-01T00:00:00Z") == []  # with user.registered and project.created
    assert_error(client.get(EVENTS, headers=owner, params={"since": "yesterday"}), 422, "VALIDATION_ERROR")


def test_event_names_are_dotted_lowercase_words(client: TestClient) -> None:
    owner = _user(client, "namer")
    for name in ("Deployment", "deployment", "deploy..done", "DEPLOY.DONE", ""):
        response = client.post(f"{EVENTS}/publish", headers=owner, json={"event_type": name})
        assert_error(response, 422, "VALIDATION_ERROR")


def test_a_tenant_sees_only_its_own_events_and_domain_events_of_its_resources(client: TestClient) -> None:
    admin = _user(client, "admin")
    alice, bob = _user(client, "alice"), _user(client, "bob")
    client.post(f"{EVENTS}/publish", headers=alice, json={"event_type": "alice.private"})
    agent = _agent(client, alice)
    client.post("/api/v1/tasks", headers=alice, json={"type": "bugfix"})
    alice_types = {item["event_type"] for item in client.get(EVENTS, headers=alice).json()["events"]}
    assert {"alice.private", "task.created"} <= alice_types
    # Bob sees his own registration, nothing of Alice's.
    assert [item["event_type"] for item in client.get(EVENTS, headers=bob).json()["events"]] == ["user.registered"]
    assert len(client.get(EVENTS, headers=admin).json()["events"]) >= 2
    assert agent["id"]


def test_stats_are_public_and_count_the_tasks(client: TestClient) -> None:
    owner = _user(client, "stats")
    for priority in ("P0", "low", "low"):
        client.post("/api/v1/tasks", headers=owner, json={"type": "bugfix", "priority": priority})
    for path in ("/stats", "/api/v1/stats"):
        response = client.get(path)
        assert response.status_code == 200, response.text
        queue = response.json()["queue"]
        assert queue["pending_tasks"] == 2 and queue["total_tasks"] == 3 and queue["processing_tasks"] == 0
        assert queue["awaiting_approval"] == 1  # the P0 waits for a human first
        assert queue["pending_by_priority"] == {"P0": 0, "P1": 0, "P2": 0, "P3": 2}
        assert response.json()["timestamp"].endswith("Z")
