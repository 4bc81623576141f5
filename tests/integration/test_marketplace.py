"""The built-in marketplace over HTTP: publish, browse, install copies, counted usage, unpublish, tenancy,
roles, pricing validation and the `marketplace.updated` events each change writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from persistence.db import Database
from persistence.models import Agent, Event
from serve_app.app import create_app
from tests.conftest import make_settings
from tests.integration.test_auth_flow import assert_error, bearer, login, register

API = "/api/v1"
AGENTS, MARKETPLACE = f"{API}/agents", f"{API}/marketplace"
# What an install copies from the listed agent; ownership, status and counters are the copy's own.
COPIED = (
    "name",
    "description",
    "framework",
    "agent_type",
    "mode",
    "type",
    "capabilities",
    "specializations",
    "tags",
    "model",
    "provider",
    "configuration",
    "max_concurrent_tasks",
    "resource_limits",
    "version",
)
SUBSCRIPTION = {"type": "subscription", "amount": 29.99, "currency": "usd", "interval": "monthly"}


def _user(client: TestClient, name: str) -> dict[str, str]:
    register(client, f"{name}@example.com")
    return bearer(login(client, f"{name}@example.com")["access_token"])


def _agent(client: TestClient, headers: dict[str, str], **body) -> dict:
    response = client.post(AGENTS, headers=headers, json={"name": "Support bot", **body})
    assert response.status_code == 201, response.text
    return response.json()


def _publish(client: TestClient, headers: dict[str, str], agent_id: str, **body) -> dict:
    response = client.post(f"{AGENTS}/{agent_id}/publish", headers=headers, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _install(client: TestClient, headers: dict[str, str], listing_id: str, **body) -> dict:
    response = client.post(f"{MARKETPLACE}/{listing_id}/install", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _usage(client: TestClient, headers: dict[str, str], agent_id: str) -> dict:
    response = client.get(f"{AGENTS}/{agent_id}/marketplace", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["usage_metrics"]


def _listed(client: TestClient, headers: dict[str, str], query: str = "") -> list[dict]:
    response = client.get(f"{MARKETPLACE}?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["listings"]


@pytest.fixture
def admin(client: TestClient) -> dict[str, str]:
    return _user(client, "admin")  # the first account is the platform admin


@pytest.fixture
def publisher(client: TestClient, admin) -> dict[str, str]:
    return _user(client, "publisher")


def test_first_publish_creates_the_listing_and_publishing_again_updates_it(client: TestClient, publisher) -> None:
    agent = _agent(client, publisher, description="answers tickets", tags=["support"])
    first = client.post(
        f"{AGENTS}/{agent['id']}/publish",
        headers=publisher,
        json={
            "marketplaceName": "hyphrki",
            "pricing": SUBSCRIPTION,
            "tags": ["customer-support", "ai"],
        },
    )
    assert first.status_code == 201, first.text
    body = first.json()
    listing_id = body["integration_id"]
    assert body == {
        "integration_id": listing_id,
        "marketplace_name": "hyphrki",
        "marketplace_agent_id": listing_id,
        "status": "published",
        "published_at": body["published_at"],
        "marketplace_url": f"{MARKETPLACE}/{listing_id}",
    }
    assert body["published_at"].endswith("Z")
    assert first.headers["Location"] == f"{MARKETPLACE}/{listing_id}"

    again = client.post(f"{AGENTS}/{agent['id']}/publish", headers=publisher, json={"description": "better"})
    assert again.status_code == 200 and "Location" not in again.headers
    assert again.json()["integration_id"] == listing_id and again.json()["published_at"] == body["published_at"]

    status = client.get(f"{AGENTS}/{agent['id']}/marketplace", headers=publisher).json()
    assert status["marketplace_name"] == "hyphrki"  # kept: not in the second request
    assert status["pricing"] == {"type": "subscription", "amount": 29.99, "currency": "USD", "interval": "monthly"}
    assert status["tags"] == ["customer-support", "ai"] and status["unpublished_at"] is None
    listing = client.get(f"{MARKETPLACE}/{listing_id}", headers=publisher).json()
    assert listing["description"] == "better" and listing["name"] == "Support bot"


def test_publish_defaults_to_a_free_listing_described_like_the_agent(client: TestClient, publisher) -> None:
    agent = _agent(client, publisher, description="answers tickets", tags=["support"])
    response = client.post(f"{AGENTS}/{agent['id']}/publish", headers=publisher)  # no body at all
    assert response.status_code == 201, response.text
    assert response.json()["marketplace_name"] == "orchestrator"
    listing = client.get(response.headers["Location"], headers=publisher).json()
    assert listing["pricing"] == {"type": "free", "amount": 0, "currency": "USD", "interval": None}
    assert listing["description"] == "answers tickets" and listing["tags"] == ["support"]


def test_another_user_browses_and_installs_a_draft_copy(client: TestClient, publisher) -> None:
    installer = _user(client, "installer")
    agent = _agent(
        client,
        publisher,
        framework="langgraph",
        agentType="visual",
        type="coding",
        capabilities=["react"],
        specializations=["frontend"],
        tags=["web"],
        model="gpt-4",
        provider="openai",
        maxConcurrentTasks=3,
        configuration={"temperature": 0.2},
        resourceLimits={"cpu": 2, "memory": 2048},
        version="2.1.0",
    )
    listing_id = _publish(client, publisher, agent["id"], pricing=SUBSCRIPTION, tags=["ai"])["integration_id"]

    [entry] = _listed(client, installer)
    assert entry["id"] == listing_id and entry["agent_id"] == agent["id"] and entry["status"] == "published"
    assert entry["framework"] == "langgraph" and entry["agent_type"] == "visual" and entry["type"] == "coding"
    assert entry["capabilities"] == ["react"] and entry["tags"] == ["ai"] and entry["version"] == "2.1.0"
    assert entry["usage_metrics"] == {"total_downloads": 0, "active_users": 0, "total_executions": 0, "revenue": 0}
    assert client.get(f"{MARKETPLACE}/{listing_id}", headers=installer).json() == entry
    # The listing is public; the listed agent itself stays private.
    assert_error(client.get(f"{AGENTS}/{agent['id']}", headers=installer), 404, "NOT_FOUND")

    response = client.post(f"{MARKETPLACE}/{listing_id}/install", headers=installer)
    assert response.status_code == 201, response.text
    installed = response.json()
    copy = installed["agent"]
    assert installed["listing_id"] == listing_id and installed["install_id"]
    assert response.headers["Location"] == f"{AGENTS}/{copy['id']}"
    assert copy["id"] != agent["id"] and copy["status"] == "draft" and copy["is_public"] is False
    assert client.get(f"{AGENTS}/{copy['id']}", headers=installer).json() == copy  # the installer's own
    assert_error(client.get(f"{AGENTS}/{copy['id']}", headers=publisher), 404, "NOT_FOUND")
    assert {field: copy[field] for field in COPIED} == {field: agent[field] for field in COPIED}
    assert copy["total_executions"] == 0 and copy["owner_id"] != agent["owner_id"]

    renamed = _install(client, installer, listing_id, name="My support bot")["agent"]
    assert renamed["name"] == "My support bot"
    mine = _install(client, publisher, listing_id)["agent"]  # installing one's own listing is allowed
    assert mine["owner_id"] == agent["owner_id"] and mine["id"] != agent["id"]


def test_usage_metrics_count_installs_surviving_copies_and_executions(
    client: TestClient, publisher, db: Database
) -> None:
    alice, bob = _user(client, "alice"), _user(client, "bob")
    agent = _agent(client, publisher)
    listing_id = _publish(client, publisher, agent["id"], pricing=SUBSCRIPTION)["integration_id"]
    alice_first = _install(client, alice, listing_id)["agent"]
    alice_second = _install(client, alice, listing_id)["agent"]
    bob_copy = _install(client, bob, listing_id)["agent"]
    with db.transaction() as session:
        for agent_id, runs in [(agent["id"], 5), (alice_first["id"], 7), (bob_copy["id"], 11)]:
            session.execute(update(Agent).where(Agent.id == agent_id).values(total_executions=runs))

    usage = _usage(client, publisher, agent["id"])
    # Two distinct installers: alice's second copy does not make her two users.
    assert usage == {"total_downloads": 3, "active_users": 2, "total_executions": 23, "revenue": 59.98}
    assert _listed(client, alice)[0]["usage_metrics"] == usage  # the catalog counts the same way

    assert client.delete(f"{AGENTS}/{bob_copy['id']}", headers=bob).status_code == 200
    assert client.delete(f"{AGENTS}/{alice_first['id']}", headers=alice).status_code == 200
    usage = _usage(client, publisher, agent["id"])
    # Downloads stay; bob no longer has a copy; alice still has one.
    assert usage == {"total_downloads": 3, "active_users": 1, "total_executions": 5, "revenue": 29.99}
    assert client.delete(f"{AGENTS}/{alice_second['id']}", headers=alice).status_code == 200
    assert _usage(client, publisher, agent["id"])["active_users"] == 0


@pytest.mark.parametrize(
    ("pricing", "revenue"),
    [
        ({"type": "one_time", "amount": 10, "currency": "EUR"}, 30.0),
        ({"type": "free"}, 0),
        ({"type": "subscription", "amount": 5, "currency": "USD", "interval": "yearly"}, 10.0),
    ],
)
def test_revenue_follows_the_pricing_type(client: TestClient, publisher, pricing: dict, revenue: float) -> None:
    alice, bob = _user(client, "alice"), _user(client, "bob")
    agent = _agent(client, publisher)
    listing_id = _publish(client, publisher, agent["id"], pricing=pricing)["integration_id"]
    for installer in (alice, alice, bob):  # three downloads by two users
        _install(client, installer, listing_id)
    assert _usage(client, publisher, agent["id"])["revenue"] == revenue


def test_unpublish_hides_the_listing_and_stops_installs(client: TestClient, publisher) -> None:
    installer = _user(client, "installer")
    agent = _agent(client, publisher)
    listing_id = _publish(client, publisher, agent["id"])["integration_id"]
    copy = _install(client, installer, listing_id)["agent"]

    response = client.post(f"{AGENTS}/{agent['id']}/unpublish", headers=publisher)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["integration_id"] == listing_id and body["status"] == "unpublished"
    assert body["unpublished_at"].endswith("Z")

    assert _listed(client, installer) == []
    assert_error(client.get(f"{MARKETPLACE}/{listing_id}", headers=installer), 404, "NOT_FOUND")
    assert_error(client.post(f"{MARKETPLACE}/{listing_id}/install", headers=installer), 404, "NOT_FOUND")
    assert client.get(f"{AGENTS}/{copy['id']}", headers=installer).status_code == 200  # copies stay
    # The publisher still sees the listing and its history.
    assert client.get(f"{MARKETPLACE}/{listing_id}", headers=publisher).json()["status"] == "unpublished"
    status = client.get(f"{AGENTS}/{agent['id']}/marketplace", headers=publisher).json()
    assert status["status"] == "unpublished" and status["usage_metrics"]["total_downloads"] == 1

    # Publishing again brings the same listing back.
    again = client.post(f"{AGENTS}/{agent['id']}/publish", headers=publisher)
    assert again.status_code == 200 and again.json()["integration_id"] == listing_id
    assert [entry["id"] for entry in _listed(client, installer)] == [listing_id]
    assert client.get(f"{AGENTS}/{agent['id']}/marketplace", headers=publisher).json()["unpublished_at"] is None


def test_never_published_agents_have_no_marketplace_status(client: TestClient, publisher) -> None:
    agent = _agent(client, publisher)
    assert_error(client.get(f"{AGENTS}/{agent['id']}/marketplace", headers=publisher), 404, "NOT_FOUND")
    assert_error(client.post(f"{AGENTS}/{agent['id']}/unpublish", headers=publisher), 404, "NOT_FOUND")
    assert_error(client.post(f"{MARKETPLACE}/{agent['id']}/install", headers=publisher), 404, "NOT_FOUND")


def test_agents_the_caller_cannot_see_are_404_and_public_ones_are_403(client: TestClient, admin, publisher) -> None:
    stranger = _user(client, "mallory")
    agent = _agent(client, publisher)
    for method, path in [("POST", "publish"), ("POST", "unpublish"), ("GET", "marketplace")]:
        response = client.request(method, f"{AGENTS}/{agent['id']}/{path}", headers=stranger)
        assert_error(response, 404, "NOT_FOUND")
    assert _listed(client, publisher) == []  # nothing was published by the attempt

    shared = _agent(client, admin, name="Platform FAQ", isPublic=True)
    assert_error(client.post(f"{AGENTS}/{shared['id']}/publish", headers=stranger), 403, "AUTHORIZATION_ERROR")
    listing_id = _publish(client, admin, shared["id"])["integration_id"]
    assert client.get(f"{AGENTS}/{shared['id']}/marketplace", headers=stranger).json()["integration_id"] == listing_id
    assert_error(client.post(f"{AGENTS}/{shared['id']}/unpublish", headers=stranger), 403, "AUTHORIZATION_ERROR")


def test_read_only_users_cannot_use_the_marketplace(tmp_path: Path, db: Database, database_url: str) -> None:
    """docs/api.md "Agents": every marketplace route needs the `agent` role, browsing included."""
    settings = make_settings(tmp_path, database_url, auth={"default_role": "user"})
    with TestClient(create_app(settings)) as client:
        admin = _user(client, "first-admin")
        reader = _user(client, "reader")
        agent = _agent(client, admin)
        listing_id = _publish(client, admin, agent["id"])["integration_id"]
        assert_error(client.get(MARKETPLACE, headers=reader), 403, "AUTHORIZATION_ERROR")
        assert_error(client.get(f"{AGENTS}/{agent['id']}/marketplace", headers=reader), 403, "AUTHORIZATION_ERROR")
        assert_error(client.post(f"{AGENTS}/{agent['id']}/publish", headers=reader), 403, "AUTHORIZATION_ERROR")
        assert_error(client.post(f"{MARKETPLACE}/{listing_id}/install", headers=reader), 403, "AUTHORIZATION_ERROR")
        assert _usage(client, admin, agent["id"])["total_downloads"] == 0


@pytest.mark.parametrize(
    ("pricing", "field"),
    [
        ({"type": "lease"}, "pricing.type"),
        ({"type": "one_time", "amount": -1}, "pricing.amount"),
        ({"type": "free", "amount": 5}, "pricing.amount"),
        ({"type": "one_time", "amount": 5, "currency": "EURO"}, "pricing.currency"),
        ({"type": "subscription", "amount": 5}, "pricing.interval"),
        ({"type": "subscription", "amount": 5, "interval": "weekly"}, "pricing.interval"),
        ({"type": "one_time", "amount": 5, "interval": "monthly"}, "pricing.interval"),
    ],
)
def test_invalid_pricing_names_the_field(client: TestClient, publisher, pricing: dict, field: str) -> None:
    agent = _agent(client, publisher)
    response = client.post(f"{AGENTS}/{agent['id']}/publish", headers=publisher, json={"pricing": pricing})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert [detail["field"] for detail in error["details"]] == [field]
    assert_error(client.get(f"{AGENTS}/{agent['id']}/marketplace", headers=publisher), 404, "NOT_FOUND")


def test_pricing_accepts_any_case_and_the_hyphenated_spelling(client: TestClient, publisher) -> None:
    agent = _agent(client, publisher)
    _publish(client, publisher, agent["id"], pricing={"type": "One-Time", "amount": 12.5, "currency": "gbp"})
    pricing = client.get(f"{AGENTS}/{agent['id']}/marketplace", headers=publisher).json()["pricing"]
    assert pricing == {"type": "one_time", "amount": 12.5, "currency": "GBP", "interval": None}


def test_browse_filters_and_sorts(client: TestClient, publisher) -> None:
    viewer = _user(client, "viewer")
    names = {}
    for name, framework, tags, description in [
        ("Alpha", "native", ["ai", "web"], "writes react"),
        ("Beta", "langgraph", ["ai"], "triages tickets"),
        ("Gamma", "native", ["ops"], None),
    ]:
        agent = _agent(client, publisher, name=name, framework=framework)
        names[name] = _publish(client, publisher, agent["id"], tags=tags, description=description)["integration_id"]
    _agent(client, publisher, name="Unlisted")
    for _ in range(2):
        _install(client, viewer, names["Gamma"])
    _install(client, viewer, names["Beta"])

    def listed(query: str) -> list[str]:
        return [entry["name"] for entry in _listed(client, viewer, query)]

    assert listed("") == ["Gamma", "Beta", "Alpha"]  # newest first
    assert listed("sort_by=name") == ["Alpha", "Beta", "Gamma"]
    assert listed("sortBy=NAME&sortOrder=desc") == ["Gamma", "Beta", "Alpha"]
    assert listed("sort_by=downloads") == ["Gamma", "Beta", "Alpha"]
    assert listed("sort_by=downloads&sort_order=asc") == ["Alpha", "Beta", "Gamma"]
    assert listed("tags=ai") == ["Beta", "Alpha"]
    assert listed("tags=ai,web") == ["Alpha"]
    assert listed("framework=LangGraph") == ["Beta"]
    assert listed("search=REACT") == ["Alpha"]  # description
    assert listed("search=gam") == ["Gamma"]  # name
    page = client.get(f"{MARKETPLACE}?limit=2&page=2", headers=viewer).json()
    assert [entry["name"] for entry in page["listings"]] == ["Alpha"]
    assert page["pagination"] == {"page": 2, "limit": 2, "total": 3, "pages": 2, "has_next": False, "has_prev": True}
    assert_error(client.get(f"{MARKETPLACE}?sort_by=price", headers=viewer), 422, "VALIDATION_ERROR")


def test_install_into_an_organization_of_the_caller(client: TestClient, publisher) -> None:
    member, outsider = _user(client, "member"), _user(client, "outsider")
    org = client.post(f"{API}/organizations", headers=member, json={"name": "Team"}).json()
    listing_id = _publish(client, publisher, _agent(client, publisher)["id"])["integration_id"]
    copy = _install(client, member, listing_id, ownerType="organization", ownerId=org["id"])["agent"]
    assert copy["owner_type"] == "organization" and copy["owner_id"] == org["id"]
    response = client.post(
        f"{MARKETPLACE}/{listing_id}/install",
        headers=outsider,
        json={"owner_type": "organization", "owner_id": org["id"]},
    )
    assert_error(response, 404, "NOT_FOUND")


def test_every_change_writes_a_marketplace_updated_event(client: TestClient, publisher, db: Database) -> None:
    installer = _user(client, "installer")
    agent = _agent(client, publisher)
    listing_id = _publish(client, publisher, agent["id"])["integration_id"]
    _install(client, installer, listing_id)
    client.post(f"{AGENTS}/{agent['id']}/unpublish", headers=publisher)
    client.post(f"{AGENTS}/{agent['id']}/unpublish", headers=publisher)  # no change, no event
    _publish(client, publisher, agent["id"])
    # Refused changes write nothing.
    assert_error(client.post(f"{MARKETPLACE}/{listing_id}/install", headers=bearer("x")), 401, "AUTHENTICATION_ERROR")

    with db.session() as session:
        rows = session.scalars(select(Event).where(Event.event_type == "marketplace.updated").order_by(Event.id)).all()
        found = [(row.data, row.source, row.subject_id, row.owner_id, row.correlation_id) for row in rows]
    assert [data["status"] for data, *_ in found] == ["published", "published", "unpublished", "published"]
    assert [data["usage_metrics"]["total_downloads"] for data, *_ in found] == [0, 1, 1, 1]
    for data, source, subject_id, owner_id, correlation_id in found:
        assert data["agent_id"] == agent["id"] == subject_id and data["integration_id"] == listing_id
        assert source == "marketplace" and owner_id == agent["owner_id"] and correlation_id
        assert set(data["usage_metrics"]) == {"total_downloads", "active_users", "total_executions", "revenue"}


def test_an_install_does_not_copy_the_publishers_credentials(client: TestClient) -> None:
    publisher, installer = _user(client, "cred-publisher"), _user(client, "cred-installer")
    configuration = {
        "temperature": 0.2,
        "api_key": "sk-live",
        "provider": {"token": "t", "url": "https://x"},
        "OPENAI_API_KEY": "sk-2",
        "password": "p",
    }
    agent = _agent(client, publisher, configuration=configuration)
    listing_id = _publish(client, publisher, agent["id"])["integration_id"]
    installed = client.post(f"{MARKETPLACE}/{listing_id}/install", headers=installer).json()["agent"]
    assert installed["configuration"] == {"temperature": 0.2, "provider": {"url": "https://x"}}
