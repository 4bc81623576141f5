"""The agent registry over HTTP: superset schema, every list filter, roles, tenancy, enable/disable."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from persistence.db import Database
from persistence.models import Agent
from serve_app.app import create_app
from tests.conftest import make_settings
from tests.integration.test_auth_flow import assert_error, bearer, login, register

AGENTS = "/api/v1/agents"


def _user(client: TestClient, name: str) -> dict[str, str]:
    register(client, f"{name}@example.com")
    return bearer(login(client, f"{name}@example.com")["access_token"])


def _agent(client: TestClient, headers: dict[str, str], **body) -> dict:
    response = client.post(AGENTS, headers=headers, json={"name": "Bot", **body})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def admin(client: TestClient) -> dict[str, str]:
    return _user(client, "admin")  # the first account is the platform admin


def _ids(response) -> list[str]:
    return [agent["id"] for agent in response.json()["agents"]]


def test_create_returns_the_superset_record_in_draft(client: TestClient, admin) -> None:
    owner = _user(client, "owner")
    response = client.post(
        AGENTS,
        headers=owner,
        json={
            "name": "Senior React Developer",
            "type": "coding",
            "model": "gpt-4",
            "provider": "openai",
            "capabilities": ["react", "typescript"],
            "specializations": ["frontend"],
            "maxConcurrentTasks": 3,
            "framework": "LangGraph",
            "agentType": "visual",
            "resourceLimits": {"cpu": 2, "memory": 4096},
            "workingHours": {"timezone": "UTC", "start": "09:00", "end": "17:00"},
            "tags": ["web"],
        },
    )
    assert response.status_code == 201
    agent = response.json()
    assert response.headers["Location"] == f"{AGENTS}/{agent['id']}"
    assert agent["status"] == "draft" and agent["is_active"] is True and agent["version"] == "1.0.0"
    assert agent["framework"] == "langgraph" and agent["agent_type"] == "visual" and agent["mode"] == "hosted"
    assert agent["owner_type"] == "user" and agent["max_concurrent_tasks"] == 3
    assert agent["resource_limits"] == {"cpu": 2.0, "memory": 4096, "gpu": 0}
    assert agent["total_executions"] == 0 and agent["success_rate"] is None
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json() == agent


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"framework": "skynet"}, "framework"),
        ({"maxConcurrentTasks": 0}, "max_concurrent_tasks"),
        ({"resourceLimits": {"cpu": -1}}, "resource_limits.cpu"),
        ({"name": ""}, "name"),
        ({"mode": "remote"}, "mode"),
        ({"capabilities": [""]}, "capabilities"),
    ],
)
def test_invalid_fields_are_named(client: TestClient, admin, body: dict, field: str) -> None:
    error = assert_error(client.post(AGENTS, headers=admin, json={"name": "x", **body}), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == field


def test_an_empty_configuration_id_is_none(client: TestClient, admin) -> None:
    response = client.post(AGENTS, headers=admin, json={"name": "x", "configurationId": ""})
    assert response.status_code == 201, response.text
    assert response.json()["configuration_id"] is None


def test_read_only_users_can_list_but_not_write(tmp_path: Path, db: Database, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, auth={"default_role": "user"})
    with TestClient(create_app(settings)) as client:
        _user(client, "first-admin")
        reader = _user(client, "reader")
        assert client.get(AGENTS, headers=reader).status_code == 200
        assert_error(client.post(AGENTS, headers=reader, json={"name": "x"}), 403, "AUTHORIZATION_ERROR")


def test_every_list_filter(client: TestClient, admin, db: Database) -> None:
    owner = _user(client, "filters")
    react = _agent(
        client,
        owner,
        name="React dev",
        type="coding",
        capabilities=["react", "typescript"],
        tags=["web", "team-a"],
        framework="langgraph",
    )
    ops = _agent(
        client,
        owner,
        name="Ops bot",
        type="ops",
        capabilities=["kubernetes"],
        tags=["infra"],
        description="watches the react cluster",
    )
    busy = _agent(client, owner, name="Busy", type="coding", capabilities=["react"], max_concurrent_tasks=1)
    with db.transaction() as session:
        session.execute(update(Agent).where(Agent.id.in_([react["id"], busy["id"]])).values(status="active"))
        session.execute(update(Agent).where(Agent.id == busy["id"]).values(current_tasks=1))

    def ids(query: str) -> set[str]:
        response = client.get(f"{AGENTS}?{query}", headers=owner)
        assert response.status_code == 200, response.text
        return set(_ids(response))

    assert ids("type=coding") == {react["id"], busy["id"]}
    assert ids("capabilities=react,typescript") == {react["id"]}
    assert ids("capabilities=react") == {react["id"], busy["id"]}
    assert ids("tags=web") == {react["id"]}
    assert ids("framework=LANGGRAPH") == {react["id"]}
    assert ids("status=ACTIVE") == {react["id"], busy["id"]}
    assert ids("status=draft") == {ops["id"]}
    # Other clients' words narrow active agents by their load.
    assert ids("status=available") == ids("available=true") == {react["id"]}
    assert ids("status=Busy") == {busy["id"]}
    assert ids("status=idle") == {react["id"]}
    assert ids("status=running") == {busy["id"]}
    assert ids("available=true") == {react["id"]}  # busy is at its task limit, ops is not deployed
    assert ids("available=false") == {ops["id"], busy["id"]}
    assert ids("search=react") == {react["id"], ops["id"]}  # name or description
    assert ids("owner_type=user&ownerType=user") == {react["id"], ops["id"], busy["id"]}
    assert_error(client.get(f"{AGENTS}?status=sleeping", headers=owner), 422, "VALIDATION_ERROR")


def test_lists_paginate_newest_first(client: TestClient, admin) -> None:
    owner = _user(client, "pages")
    created = [_agent(client, owner, name=f"a{index}")["id"] for index in range(5)]
    page = client.get(f"{AGENTS}?limit=2&page=2", headers=owner).json()
    assert _ids_of(page) == list(reversed(created))[2:4]
    assert page["pagination"] == {"page": 2, "limit": 2, "total": 5, "pages": 3, "has_next": True, "has_prev": True}


def _ids_of(page: dict) -> list[str]:
    return [agent["id"] for agent in page["agents"]]


def test_another_users_agents_are_invisible(client: TestClient, admin) -> None:
    owner, stranger = _user(client, "alice"), _user(client, "mallory")
    agent = _agent(client, owner)
    path = f"{AGENTS}/{agent['id']}"
    for method, url, body in [
        ("GET", path, None),
        ("PUT", path, {"name": "x"}),
        ("PATCH", path, {"name": "x"}),
        ("DELETE", path, None),
        ("POST", f"{path}/disable", None),
    ]:
        assert_error(client.request(method, url, headers=stranger, json=body), 404, "NOT_FOUND")
    assert agent["id"] not in _ids(client.get(AGENTS, headers=stranger))
    assert agent["id"] in _ids(client.get(AGENTS, headers=admin))  # admins see all


def test_organization_agents_are_shared_with_members(client: TestClient, admin) -> None:
    owner, member, outsider = _user(client, "o"), _user(client, "m"), _user(client, "x")
    org = client.post("/api/v1/organizations", headers=owner, json={"name": "Team"}).json()
    client.post(f"/api/v1/organizations/{org['id']}/members", headers=owner, json={"email": "m@example.com"})
    agent = _agent(client, owner, ownerType="organization", ownerId=org["id"])
    assert client.patch(f"{AGENTS}/{agent['id']}", headers=member, json={"description": "ours"}).status_code == 200
    assert_error(client.get(f"{AGENTS}/{agent['id']}", headers=outsider), 404, "NOT_FOUND")
    foreign = client.post(
        AGENTS, headers=outsider, json={"name": "x", "ownerType": "organization", "ownerId": org["id"]}
    )
    assert_error(foreign, 404, "NOT_FOUND")


def test_only_admins_make_agents_public_and_public_agents_are_read_only(client: TestClient, admin) -> None:
    user = _user(client, "pub")
    assert_error(client.post(AGENTS, headers=user, json={"name": "x", "isPublic": True}), 403, "AUTHORIZATION_ERROR")
    shared = _agent(client, admin, name="Platform FAQ", is_public=True)
    assert client.get(f"{AGENTS}/{shared['id']}", headers=user).status_code == 200
    assert shared["id"] in _ids(client.get(AGENTS, headers=user))
    assert_error(
        client.put(f"{AGENTS}/{shared['id']}", headers=user, json={"name": "mine"}), 403, "AUTHORIZATION_ERROR"
    )


def test_updates_change_only_given_fields_and_refuse_nulls(client: TestClient, admin) -> None:
    agent = _agent(client, admin, description="first", capabilities=["a"])
    updated = client.put(f"{AGENTS}/{agent['id']}", headers=admin, json={"name": "Renamed"}).json()
    assert updated["name"] == "Renamed" and updated["description"] == "first" and updated["capabilities"] == ["a"]
    assert updated["status"] == "draft"
    assert_error(client.patch(f"{AGENTS}/{agent['id']}", headers=admin, json={"name": None}), 422, "VALIDATION_ERROR")
    # status is not a client-writable field: it changes through deploy/undeploy only
    assert client.patch(f"{AGENTS}/{agent['id']}", headers=admin, json={"status": "active"}).json()["status"] == "draft"


def test_a_flag_is_true_or_false_not_a_number_or_a_word(client: TestClient, admin) -> None:
    """The OpenAPI says boolean: 1, 0 or "yes" are refused (422 naming the field), not read as true or false."""
    for value in (1, 0, "yes"):
        response = client.post(AGENTS, headers=admin, json={"name": "Bot", "isPublic": value})
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert any("is_public" in str(issue) or "isPublic" in str(issue) for issue in error["details"]), error
    agent = _agent(client, admin, isPublic=True)
    assert agent["is_public"] is True
    assert_error(client.patch(f"{AGENTS}/{agent['id']}", headers=admin, json={"isActive": 0}), 422, "VALIDATION_ERROR")


def test_disable_keeps_the_status_and_records_the_reason(client: TestClient, admin) -> None:
    agent = _agent(client, admin)
    disabled = client.post(f"{AGENTS}/{agent['id']}/disable", headers=admin, json={"reason": "Maintenance required"})
    assert disabled.json()["is_active"] is False and disabled.json()["disabled_reason"] == "Maintenance required"
    assert disabled.json()["status"] == "draft"
    enabled = client.post(f"{AGENTS}/{agent['id']}/enable", headers=admin).json()
    assert enabled["is_active"] is True and enabled["disabled_reason"] is None


def test_delete_answers_with_a_message_and_the_agent_is_gone(client: TestClient, admin) -> None:
    agent = _agent(client, admin)
    response = client.delete(f"{AGENTS}/{agent['id']}", headers=admin)
    assert response.status_code == 200 and response.json() == {"message": "Agent deleted successfully"}
    assert_error(client.get(f"{AGENTS}/{agent['id']}", headers=admin), 404, "NOT_FOUND")
