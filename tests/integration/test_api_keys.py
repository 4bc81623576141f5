"""API keys and environment keys (`ORCHESTRATOR_API_KEY_<NAME>`)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from core.clock import utcnow
from core.settings import parse_env_api_keys
from persistence.db import Database
from persistence.models import ApiKey
from serve_app.app import create_app
from tests.conftest import make_settings
from tests.integration.test_auth_flow import assert_error, bearer, login, register


def _token(client: TestClient, email: str) -> str:
    register(client, email)
    return login(client, email)["access_token"]


def _create(client: TestClient, token: str, **body) -> dict:
    response = client.post("/api/v1/auth/api-keys", headers=bearer(token), json={"name": "ci", **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_key_is_shown_once_and_works_in_both_headers(client: TestClient) -> None:
    token = _token(client, "keys@example.com")
    created = _create(client, token)
    assert re.fullmatch(r"ao_[0-9a-f]{64}", created["key"])
    assert created["prefix"] == created["key"][:11]
    assert created["permissions"] == ["*"]
    listed = client.get("/api/v1/auth/api-keys", headers=bearer(token)).json()["api_keys"]
    assert [item["id"] for item in listed] == [created["id"]]
    assert created["key"] not in str(listed)
    assert client.get("/api/v1/users/me", headers=bearer(created["key"])).status_code == 200
    assert client.get("/api/v1/users/me", headers={"X-API-Key": created["key"]}).status_code == 200


def test_the_key_is_stored_hashed(client: TestClient, db: Database) -> None:
    created = _create(client, _token(client, "hash@example.com"))
    with db.session() as session:
        stored = session.get(ApiKey, created["id"])
        assert created["key"] not in (stored.key_hash, stored.prefix)
        assert len(stored.key_hash) == 64


def test_using_a_key_records_last_used(client: TestClient) -> None:
    token = _token(client, "used@example.com")
    created = _create(client, token)
    assert created["last_used_at"] is None
    client.get("/api/v1/users/me", headers={"X-API-Key": created["key"]})
    listed = client.get("/api/v1/auth/api-keys", headers=bearer(token)).json()["api_keys"]
    assert listed[0]["last_used_at"] is not None


def test_revoked_expired_and_unknown_keys_get_401(client: TestClient, db: Database) -> None:
    token = _token(client, "revoke@example.com")
    revoked = _create(client, token)
    assert client.delete(f"/api/v1/auth/api-keys/{revoked['id']}", headers=bearer(token)).status_code == 200
    assert_error(client.get("/api/v1/users/me", headers={"X-API-Key": revoked["key"]}), 401, "AUTHENTICATION_ERROR")

    expiring = _create(client, token, expires_in_days=1)
    with db.transaction() as session:
        session.execute(update(ApiKey).where(ApiKey.id == expiring["id"]).values(expires_at=utcnow() - timedelta(1)))
    error = assert_error(
        client.get("/api/v1/users/me", headers={"X-API-Key": expiring["key"]}), 401, "AUTHENTICATION_ERROR"
    )
    assert "expired" in error["message"]
    assert_error(client.get("/api/v1/users/me", headers={"X-API-Key": "ao_" + "0" * 64}), 401, "AUTHENTICATION_ERROR")


def test_scopes_narrow_what_a_key_may_do(client: TestClient) -> None:
    token = _token(client, "scoped@example.com")
    reader = _create(client, token, permissions=["organizations:read"])["key"]
    assert client.get("/api/v1/organizations", headers={"X-API-Key": reader}).status_code == 200
    assert_error(
        client.post("/api/v1/organizations", headers={"X-API-Key": reader}, json={"name": "X"}),
        403,
        "AUTHORIZATION_ERROR",
    )
    assert_error(client.get("/api/v1/users/me", headers={"X-API-Key": reader}), 403, "AUTHORIZATION_ERROR")
    writer = _create(client, token, scopes=["organizations:write"])["key"]
    assert client.post("/api/v1/organizations", headers={"X-API-Key": writer}, json={"name": "Y"}).status_code == 201


def test_unknown_scopes_and_past_expiry_are_refused(client: TestClient) -> None:
    token = _token(client, "bad@example.com")
    response = client.post(
        "/api/v1/auth/api-keys", headers=bearer(token), json={"name": "x", "permissions": ["tasks:delete-everything"]}
    )
    assert assert_error(response, 422, "VALIDATION_ERROR")["details"][0]["field"] == "permissions"
    response = client.post(
        "/api/v1/auth/api-keys", headers=bearer(token), json={"name": "x", "expires_at": "2001-01-01T00:00:00Z"}
    )
    assert_error(response, 422, "VALIDATION_ERROR")


def test_a_key_cannot_be_revoked_by_another_user(client: TestClient) -> None:
    register(client, "admin@example.com")
    owner = _token(client, "owner@example.com")
    stranger = _token(client, "stranger@example.com")
    created = _create(client, owner)
    assert_error(client.delete(f"/api/v1/auth/api-keys/{created['id']}", headers=bearer(stranger)), 404, "NOT_FOUND")
    assert client.get("/api/v1/users/me", headers={"X-API-Key": created["key"]}).status_code == 200


def test_environment_keys_authenticate_with_their_role(tmp_path: Path, db: Database, database_url: str) -> None:
    env = {"ORCHESTRATOR_API_KEY_DEV_AGENT": "ao_devkey123:agent", "ORCHESTRATOR_API_KEY_VIEWER": "ao_view:user"}
    settings = make_settings(tmp_path, database_url, auth={"env_api_keys": parse_env_api_keys(env)})
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/organizations", headers={"X-API-Key": "ao_devkey123"}).status_code == 200
        viewer_write = client.post("/api/v1/organizations", headers={"X-API-Key": "ao_view"}, json={"name": "n"})
        assert_error(viewer_write, 403, "AUTHORIZATION_ERROR")
        assert_error(client.get("/api/v1/users/me", headers=bearer("ao_devkey123")), 404, "NOT_FOUND")
        assert_error(client.get("/api/v1/organizations", headers={"X-API-Key": "ao_nope"}), 401, "AUTHENTICATION_ERROR")


def test_malformed_environment_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="<key>:<role>"):
        parse_env_api_keys({"ORCHESTRATOR_API_KEY_X": "no-role-here"})
    with pytest.raises(ValueError, match="unknown role"):
        parse_env_api_keys({"ORCHESTRATOR_API_KEY_X": "key:root"})


def test_a_scoped_key_cannot_create_a_broader_key(client: TestClient) -> None:
    token = _token(client, "narrow@example.com")
    narrow = _create(client, token, permissions=["api_keys:write", "organizations:read"])["key"]
    broader = client.post("/api/v1/auth/api-keys", headers={"X-API-Key": narrow}, json={"name": "x"})
    assert broader.status_code == 201 and broader.json()["permissions"] == ["api_keys:write", "organizations:read"]
    escalate = client.post(
        "/api/v1/auth/api-keys", headers={"X-API-Key": narrow}, json={"name": "y", "permissions": ["*"]}
    )
    assert_error(escalate, 403, "AUTHORIZATION_ERROR")


def test_a_scoped_admin_key_cannot_mint_service_tokens(client: TestClient) -> None:
    admin = _token(client, "root@example.com")
    scoped = _create(client, admin, permissions=["organizations:read"])["key"]
    body = {"user_id": "svc", "role": "admin"}
    assert_error(
        client.post("/api/v1/auth/token", headers={"X-API-Key": scoped}, json=body), 403, "AUTHORIZATION_ERROR"
    )
    full = _create(client, admin)["key"]
    assert client.post("/api/v1/auth/token", headers={"X-API-Key": full}, json=body).status_code == 200


def test_a_key_and_its_owners_token_share_one_rate_limit(tmp_path: Path, db: Database, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, rate_limits={"rate_limit_general": "4/h"})
    with TestClient(create_app(settings)) as client:
        token = _token(client, "budget@example.com")
        key = _create(client, token)["key"]  # the first request of the budget
        statuses = [
            client.get("/api/v1/organizations", headers=h).status_code
            for h in (bearer(token), {"X-API-Key": key}, bearer(token), {"X-API-Key": key})
        ]
        assert statuses == [200, 200, 200, 429]


def test_an_expiry_without_a_zone_is_read_as_utc(client: TestClient) -> None:
    created = _create(client, _token(client, "naive@example.com"), expires_at="2099-01-01T00:00:00")
    assert created["expires_at"] == "2099-01-01T00:00:00Z"


def test_wildcard_scopes_grant_what_they_say(client: TestClient) -> None:
    token = _token(client, "wild@example.com")
    for scopes in (["*:*"], ["*:read"], ["organizations:*"]):
        key = _create(client, token, permissions=scopes)["key"]
        assert client.get("/api/v1/organizations", headers={"X-API-Key": key}).status_code == 200, scopes


def test_key_list_is_paginated(client: TestClient) -> None:
    token = _token(client, "many@example.com")
    for _ in range(3):
        _create(client, token)
    page = client.get("/api/v1/auth/api-keys?limit=2", headers=bearer(token)).json()
    assert len(page["api_keys"]) == 2 and page["pagination"]["total"] == 3 and page["links"]["next"]


def test_seed_002_environment_keys_need_no_prefix(tmp_path: Path, db: Database, database_url: str) -> None:
    keys = parse_env_api_keys({"ORCHESTRATOR_API_KEY_ADMIN": "admin-key-here:admin"})
    settings = make_settings(tmp_path, database_url, auth={"env_api_keys": keys})
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/users", headers={"X-API-Key": "admin-key-here"}).status_code == 200
        assert client.get("/api/v1/users", headers=bearer("admin-key-here")).status_code == 200
