"""Security checks that grow with the API: every route the app serves (read from its router, not a hand
list) is checked, so a new route is covered the moment it exists."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient

from persistence.db import Database
from serve_app.app import create_app
from serve_app.routing import RouteInfo, api_routes, is_public, minimum_role
from services.principal import Role
from tests.conftest import make_settings
from tests.integration.test_auth_flow import PASSWORD, assert_error, bearer, login, register

SOME_ID = "01a20a00-0000-7000-8000-000000000000"


@dataclass
class Tokens:
    by_role: dict[Role, str]
    expired: str
    tampered: str
    revoked: str
    foreign: str


@pytest.fixture
def secured(tmp_path: Path, db: Database, database_url: str) -> Iterator[tuple[TestClient, Tokens]]:
    settings = make_settings(
        tmp_path, database_url, auth={"default_role": "user"}, rate_limits={"rate_limit_general": "100000/h"}
    )
    secret = settings.auth.jwt_secret.get_secret_value()
    with TestClient(create_app(settings)) as client:
        register(client, "admin@example.com")  # first account: admin
        register(client, "reader@example.com")  # default role: user
        admin = login(client, "admin@example.com")["access_token"]
        reader = login(client, "reader@example.com")["access_token"]
        agent = client.post("/api/v1/auth/token", headers=bearer(admin), json={"user_id": "svc", "role": "agent"})
        revoked = login(client, "reader@example.com")["access_token"]
        assert client.post("/api/v1/auth/logout", headers=bearer(revoked)).status_code == 200
        now = int(time.time())
        claims = jwt.decode(admin, options={"verify_signature": False})
        yield (
            client,
            Tokens(
                by_role={Role.admin: admin, Role.agent: agent.json()["access_token"], Role.user: reader},
                expired=jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, secret, "HS256"),
                tampered=_tamper(admin),
                revoked=revoked,
                foreign=jwt.encode({**claims, "exp": now + 600}, "someone-elses-key-" * 3, "HS256"),
            ),
        )


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{payload}.{signature[:-4]}{'AAAA' if not signature.endswith('AAAA') else 'BBBB'}"


def _path(route: RouteInfo) -> str:
    return re.sub(r"\{[^}]+\}", SOME_ID, route.path)


def _protected(client: TestClient) -> list[tuple[str, str, RouteInfo]]:
    routes = [
        (method, _path(route), route)
        for route in api_routes(client.app)
        if not is_public(route)
        for method in sorted(route.methods)
    ]
    assert len(routes) >= 15, "the route walker found the app's routes"
    return routes


def test_every_protected_route_refuses_missing_and_bad_credentials(secured) -> None:
    client, tokens = secured
    for method, path, _ in _protected(client):
        for label, headers in [
            ("none", {}),
            ("expired", bearer(tokens.expired)),
            ("tampered", bearer(tokens.tampered)),
            ("revoked", bearer(tokens.revoked)),
            ("foreign key", bearer(tokens.foreign)),
            ("unknown api key", {"X-API-Key": "ao_" + "f" * 64}),
        ]:
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, label, response.text)
            assert_error(response, 401, "AUTHENTICATION_ERROR")


def test_every_route_refuses_roles_below_its_minimum(secured) -> None:
    client, tokens = secured
    checked = 0
    for method, path, route in _protected(client):
        minimum = minimum_role(route, method) or Role.user
        for role in Role:
            if role.rank < minimum.rank:
                response = client.request(method, path, headers=bearer(tokens.by_role[role]))
                assert response.status_code == 403, (method, path, role, response.text)
                checked += 1
    assert checked >= 3, "admin/agent-only routes exist and were checked"


def test_public_routes_are_exactly_the_declared_ones(secured) -> None:
    client, _ = secured
    public = {(method, route.path) for route in api_routes(client.app) if is_public(route) for method in route.methods}
    assert public == {
        ("GET", "/health"),
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/system/health"),
        ("GET", "/stats"),
        ("GET", "/api/v1/stats"),
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/oauth/token"),
        ("POST", "/oauth/token"),
        # The console's page and assets: its calls to the API authenticate as any client's do.
        ("GET", "/console"),
        ("GET", "/console/"),
        ("GET", "/console/assets/{name}"),
    }


def test_another_organizations_resources_are_invisible(secured) -> None:
    client, tokens = secured
    register(client, "tenant-b@example.com")
    tenant_b = bearer(login(client, "tenant-b@example.com")["access_token"])
    reader = bearer(tokens.by_role[Role.user])
    org = client.post("/api/v1/organizations", headers=tenant_b, json={"name": "Tenant B"}).json()
    key = client.post("/api/v1/auth/api-keys", headers=tenant_b, json={"name": "b"}).json()
    assert_error(client.get(f"/api/v1/organizations/{org['id']}", headers=reader), 404, "NOT_FOUND")
    assert_error(client.put(f"/api/v1/organizations/{org['id']}", headers=reader, json={"name": "x"}), 404, "NOT_FOUND")
    assert_error(client.delete(f"/api/v1/auth/api-keys/{key['id']}", headers=reader), 404, "NOT_FOUND")
    listed = client.get("/api/v1/organizations", headers=reader).json()
    assert org["id"] not in str(listed) and listed["pagination"]["total"] == 0
    assert key["id"] not in str(client.get("/api/v1/auth/api-keys", headers=reader).json())
    # and the owner still sees both
    assert client.get(f"/api/v1/organizations/{org['id']}", headers=tenant_b).status_code == 200
    assert PASSWORD not in str(listed)
