"""Saved configurations and templates: CRUD, filters, public sharing, counted uses."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.integration.test_agents import _user
from tests.integration.test_auth_flow import assert_error

CONFIGS = "/api/v1/configurations"


def _config(client: TestClient, headers: dict[str, str], **body) -> dict:
    response = client.post(CONFIGS, headers=headers, json={"name": "cfg", "configuration": {}, **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_crud(client: TestClient) -> None:
    _user(client, "admin")
    owner = _user(client, "owner")
    body = {"name": "React", "framework": "langgraph", "configuration": {"temperature": 0.7}, "isTemplate": True}
    created = client.post(CONFIGS, headers=owner, json=body)
    assert created.status_code == 201 and created.headers["Location"].endswith(created.json()["id"])
    body = created.json()
    assert body["is_template"] is True and body["usage_count"] == 0 and body["configuration"] == {"temperature": 0.7}
    path = f"{CONFIGS}/{body['id']}"
    assert client.get(path, headers=owner).json() == body
    updated = client.put(path, headers=owner, json={"description": "for React work"}).json()
    assert updated["description"] == "for React work" and updated["name"] == "React"
    assert client.delete(path, headers=owner).json() == {"message": "Configuration deleted successfully"}
    assert_error(client.get(path, headers=owner), 404, "NOT_FOUND")


def test_a_save_without_its_configuration_is_refused_naming_the_field(client: TestClient) -> None:
    owner = _user(client, "owner")
    refused = client.post(CONFIGS, headers=owner, json={"name": "empty", "framework": "native"})
    assert_error(refused, 422, "VALIDATION_ERROR")
    assert [issue["field"] for issue in refused.json()["error"]["details"]] == ["configuration"]
    assert client.get(CONFIGS, headers=owner).json()["configurations"] == []


def test_filters_template_framework_search_and_public(client: TestClient) -> None:
    _user(client, "admin")
    me, other = _user(client, "me"), _user(client, "other")
    template = _config(client, me, name="Support template", is_template=True, framework="crewai")
    plain = _config(client, me, name="Scratch", description="support experiments")
    shared = _config(client, other, name="Shared support", is_public=True)
    private = _config(client, other, name="Private support")

    def ids(query: str = "") -> set[str]:
        return {item["id"] for item in client.get(f"{CONFIGS}?{query}", headers=me).json()["configurations"]}

    assert ids() == {template["id"], plain["id"]}
    assert ids("template=true") == {template["id"]}
    assert ids("template=false") == {plain["id"]}
    assert ids("framework=crewai") == {template["id"]}
    assert ids("search=support") == {template["id"], plain["id"]}
    assert ids("public=true") == {template["id"], plain["id"], shared["id"]}
    assert private["id"] not in ids("public=true&search=support")


def test_usage_count_counts_agents_created_from_it(client: TestClient) -> None:
    _user(client, "admin")
    owner, user = _user(client, "author"), _user(client, "consumer")
    template = _config(
        client,
        owner,
        is_public=True,
        is_template=True,
        framework="crewai",
        configuration={"temperature": 0.2, "maxTokens": 100},
    )
    body = {"name": "from template", "configurationId": template["id"], "configuration": {"maxTokens": 500}}
    agent = client.post("/api/v1/agents", headers=user, json=body).json()
    assert agent["framework"] == "crewai" and agent["configuration_id"] == template["id"]
    assert agent["configuration"] == {"temperature": 0.2, "maxTokens": 500}
    client.post("/api/v1/agents", headers=owner, json={"name": "again", "configurationId": template["id"]})
    assert client.get(f"{CONFIGS}/{template['id']}", headers=owner).json()["usage_count"] == 2
    # someone else's public template can be used but not changed
    assert_error(
        client.put(f"{CONFIGS}/{template['id']}", headers=user, json={"name": "x"}), 403, "AUTHORIZATION_ERROR"
    )


def test_a_private_configuration_of_another_user_cannot_be_used_or_seen(client: TestClient) -> None:
    _user(client, "admin")
    owner, stranger = _user(client, "keeper"), _user(client, "snoop")
    private = _config(client, owner)
    assert_error(client.get(f"{CONFIGS}/{private['id']}", headers=stranger), 404, "NOT_FOUND")
    used = client.post("/api/v1/agents", headers=stranger, json={"name": "x", "configurationId": private["id"]})
    assert_error(used, 404, "NOT_FOUND")
    assert client.get(f"{CONFIGS}/{private['id']}", headers=owner).json()["usage_count"] == 0
