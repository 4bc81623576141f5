"""OAuth 2.0 client credentials."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from tests.integration.test_auth_flow import assert_error, bearer, login, register


def _admin(client: TestClient) -> str:
    register(client, "admin@example.com")
    return login(client, "admin@example.com")["access_token"]


def _client(client: TestClient, admin: str, **body) -> dict:
    response = client.post("/api/v1/oauth/clients", headers=bearer(admin), json={"name": "bot", **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_client_credentials_grant_issues_a_scoped_token(client: TestClient) -> None:
    admin = _admin(client)
    registered = _client(client, admin, role="agent", scopes=["organizations:read"])
    assert registered["client_id"].startswith("oc_") and registered["client_secret"].startswith("ocs_")
    assert registered["client_secret"] not in str(client.get("/api/v1/oauth/clients", headers=bearer(admin)).json())

    form = {
        "grant_type": "client_credentials",
        "client_id": registered["client_id"],
        "client_secret": registered["client_secret"],
    }
    response = client.post("/oauth/token", data=form)  # the root path some clients use
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "organizations:read"
    token = body["access_token"]
    assert client.get("/api/v1/organizations", headers=bearer(token)).status_code == 200
    assert_error(
        client.post("/api/v1/organizations", headers=bearer(token), json={"name": "n"}), 403, "AUTHORIZATION_ERROR"
    )
    # The same endpoint under /api/v1, with HTTP Basic client authentication.
    basic = base64.b64encode(f"{registered['client_id']}:{registered['client_secret']}".encode()).decode()
    response = client.post(
        "/api/v1/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200


def test_wrong_secret_unknown_client_and_revoked_client_get_401(client: TestClient) -> None:
    admin = _admin(client)
    registered = _client(client, admin)
    grant = {"grant_type": "client_credentials", "client_id": registered["client_id"]}
    assert_error(client.post("/oauth/token", data={**grant, "client_secret": "ocs_wrong"}), 401, "AUTHENTICATION_ERROR")
    assert_error(
        client.post("/oauth/token", data={**grant, "client_id": "oc_nope", "client_secret": "x"}),
        401,
        "AUTHENTICATION_ERROR",
    )
    client.delete(f"/api/v1/oauth/clients/{registered['id']}", headers=bearer(admin))
    assert_error(
        client.post("/oauth/token", data={**grant, "client_secret": registered["client_secret"]}),
        401,
        "AUTHENTICATION_ERROR",
    )


def test_unsupported_grant_and_wider_scope_are_refused(client: TestClient) -> None:
    admin = _admin(client)
    registered = _client(client, admin, scopes=["organizations:read"])
    credentials = {"client_id": registered["client_id"], "client_secret": registered["client_secret"]}
    response = client.post("/oauth/token", data={"grant_type": "password", **credentials})
    assert assert_error(response, 422, "VALIDATION_ERROR")["details"][0]["field"] == "grant_type"
    wider = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "users:write", **credentials}
    )
    assert_error(wider, 403, "AUTHORIZATION_ERROR")
    json_body = client.post("/oauth/token", json={"grant_type": "client_credentials", **credentials})
    assert json_body.status_code == 200


def test_only_admins_register_clients(client: TestClient) -> None:
    register(client, "admin@example.com")
    register(client, "agent@example.com")
    agent = login(client, "agent@example.com")["access_token"]
    assert_error(
        client.post("/api/v1/oauth/clients", headers=bearer(agent), json={"name": "x"}), 403, "AUTHORIZATION_ERROR"
    )


def test_revoking_a_client_revokes_the_tokens_it_holds(client: TestClient) -> None:
    admin = _admin(client)
    registered = _client(client, admin)
    form = {
        "grant_type": "client_credentials",
        "client_id": registered["client_id"],
        "client_secret": registered["client_secret"],
    }
    token = client.post("/oauth/token", data=form).json()["access_token"]
    assert client.get("/api/v1/organizations", headers=bearer(token)).status_code == 200
    client.delete(f"/api/v1/oauth/clients/{registered['id']}", headers=bearer(admin))
    assert_error(client.get("/api/v1/organizations", headers=bearer(token)), 401, "AUTHENTICATION_ERROR")


def test_client_list_is_paginated(client: TestClient) -> None:
    admin = _admin(client)
    _client(client, admin)
    page = client.get("/api/v1/oauth/clients", headers=bearer(admin)).json()
    assert page["pagination"]["total"] == 1 and len(page["clients"]) == 1
