"""Refresh rotation with theft detection, logout, service tokens and tokens minted by the key holder."""

from __future__ import annotations

import asyncio
import time

import jwt
from fastapi.testclient import TestClient

from core.settings import Settings
from services import sessions
from tests.integration.test_auth_flow import assert_error, bearer, login, register


def _me(client: TestClient, token: str):
    return client.get("/api/v1/users/me", headers=bearer(token))


def test_refresh_rotates_both_tokens(client: TestClient) -> None:
    register(client, "rot@example.com")
    first = login(client, "rot@example.com")
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200
    second = response.json()
    assert second["token_type"] == "Bearer" and second["expires_in"] == 3600
    assert second["refresh_token"] != first["refresh_token"]
    assert _me(client, second["access_token"]).status_code == 200
    # The camelCase spelling some clients send is accepted as well.
    third = client.post("/api/v1/auth/refresh", json={"refreshToken": second["refresh_token"]})
    assert third.status_code == 200


def test_reusing_a_refresh_token_revokes_the_whole_family(client: TestClient) -> None:
    register(client, "theft@example.com")
    stolen = login(client, "theft@example.com")
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": stolen["refresh_token"]}).json()

    reuse = client.post("/api/v1/auth/refresh", json={"refresh_token": stolen["refresh_token"]})
    assert "reuse" in assert_error(reuse, 401, "AUTHENTICATION_ERROR")["message"]
    # The legitimate holder's newer tokens of the same login die too.
    assert_error(
        client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}),
        401,
        "AUTHENTICATION_ERROR",
    )
    assert_error(_me(client, rotated["access_token"]), 401, "AUTHENTICATION_ERROR")
    assert_error(_me(client, stolen["access_token"]), 401, "AUTHENTICATION_ERROR")
    # Another login of the same account is a different family and keeps working.
    assert _me(client, login(client, "theft@example.com")["access_token"]).status_code == 200


def test_logout_revokes_the_access_token_and_its_refresh_family(client: TestClient) -> None:
    register(client, "out@example.com")
    session = login(client, "out@example.com")
    other = login(client, "out@example.com")
    response = client.post("/api/v1/auth/logout", headers=bearer(session["access_token"]))
    assert response.status_code == 200 and response.json() == {"message": "Successfully logged out"}
    assert "revoked" in assert_error(_me(client, session["access_token"]), 401, "AUTHENTICATION_ERROR")["message"]
    assert_error(
        client.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}),
        401,
        "AUTHENTICATION_ERROR",
    )
    assert _me(client, other["access_token"]).status_code == 200


def test_logout_with_a_refresh_token_in_the_body_revokes_that_family_too(client: TestClient) -> None:
    register(client, "body@example.com")
    first = login(client, "body@example.com")
    second = login(client, "body@example.com")
    client.post(
        "/api/v1/auth/logout", headers=bearer(first["access_token"]), json={"refresh_token": second["refresh_token"]}
    )
    assert_error(
        client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}),
        401,
        "AUTHENTICATION_ERROR",
    )


def test_tokens_cannot_stand_in_for_each_other(client: TestClient) -> None:
    register(client, "types@example.com")
    tokens = login(client, "types@example.com")
    assert_error(_me(client, tokens["refresh_token"]), 401, "AUTHENTICATION_ERROR")
    assert_error(
        client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]}), 401, "AUTHENTICATION_ERROR"
    )


def test_admin_mints_service_tokens_and_others_cannot(client: TestClient) -> None:
    register(client, "root@example.com")
    register(client, "agent@example.com")
    admin = login(client, "root@example.com")["access_token"]
    agent = login(client, "agent@example.com")["access_token"]
    body = {"user_id": "dev-agent-1", "role": "agent"}
    assert_error(client.post("/api/v1/auth/token", headers=bearer(agent), json=body), 403, "AUTHORIZATION_ERROR")
    minted = client.post("/api/v1/auth/token", headers=bearer(admin), json={**body, "expires_in": 600})
    assert minted.status_code == 200 and minted.json()["expires_in"] == 600
    service = minted.json()["access_token"]
    claims = jwt.decode(service, options={"verify_signature": False})
    assert claims["sub"] == "dev-agent-1" and claims["role"] == "agent"
    assert client.get("/api/v1/organizations", headers=bearer(service)).status_code == 200
    # A service identity has no user account.
    assert_error(_me(client, service), 404, "NOT_FOUND")
    assert_error(
        client.post("/api/v1/auth/token", headers=bearer(admin), json={"user_id": "x", "role": "root"}),
        422,
        "VALIDATION_ERROR",
    )


def test_seed_002_self_minted_tokens_are_accepted(client: TestClient, settings: Settings) -> None:
    register(client, "first@example.com")
    secret = settings.auth.jwt_secret.get_secret_value()
    now = int(time.time())
    minted = jwt.encode({"sub": "dev-agent-1", "role": "agent", "exp": now + 60, "iat": now}, secret, "HS256")
    assert client.get("/api/v1/organizations", headers=bearer(minted)).status_code == 200
    refresh_typed = jwt.encode(
        {"sub": "x", "role": "admin", "exp": now + 60, "iat": now, "type": "refresh", "jti": "j"}, secret, "HS256"
    )
    assert_error(client.get("/api/v1/organizations", headers=bearer(refresh_typed)), 401, "AUTHENTICATION_ERROR")
    foreign_issuer = jwt.encode(
        {"sub": "x", "role": "admin", "exp": now + 60, "iat": now, "iss": "elsewhere"}, secret, "HS256"
    )
    assert_error(client.get("/api/v1/organizations", headers=bearer(foreign_issuer)), 401, "AUTHENTICATION_ERROR")
    unknown_role = jwt.encode({"sub": "x", "role": "superuser", "exp": now + 60, "iat": now}, secret, "HS256")
    assert_error(client.get("/api/v1/organizations", headers=bearer(unknown_role)), 401, "AUTHENTICATION_ERROR")


def test_housekeeping_purges_only_expired_credentials(client: TestClient, db) -> None:
    from datetime import timedelta

    from sqlalchemy import func, select, update

    from core.clock import utcnow
    from persistence.models import RefreshToken, TokenRevocation
    from services.housekeeping import purge_expired_credentials

    register(client, "purge@example.com")
    old = login(client, "purge@example.com")
    client.post("/api/v1/auth/logout", headers=bearer(old["access_token"]))
    current = login(client, "purge@example.com")
    with db.transaction() as session:
        session.execute(update(TokenRevocation).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert purge_expired_credentials(db) >= 1
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(TokenRevocation)) == 0
        assert session.scalar(select(func.count()).select_from(RefreshToken)) >= 1
    assert _me(client, current["access_token"]).status_code == 200


def test_concurrent_revocation_checks_are_one_lookup_and_each_request_gets_its_own_answer(
    client: TestClient, db
) -> None:
    """Requests' token checks are batched (`AppContext.revocations`): a logged-out token among live ones is
    refused, and only it."""
    register(client, "many@example.com")
    tokens = [login(client, "many@example.com")["access_token"] for _ in range(4)]
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens[1])).status_code == 200
    claims = [jwt.decode(token, options={"verify_signature": False}) for token in tokens]
    checks = [(c["jti"], c.get("fam"), None) for c in claims] + [(None, claims[1]["fam"], None), (None, None, None)]
    with db.connect() as connection:
        assert sessions.revoked(connection, checks) == [False, True, False, False, True, False]

    context = client.app.state.context
    batches_before = context.revocations.batches

    async def all_at_once() -> list[bool]:
        return await asyncio.gather(*(context.revocations.submit(check) for check in checks))

    assert client.portal.call(all_at_once) == [False, True, False, False, True, False]
    assert context.revocations.batches - batches_before <= 2  # the first alone, then the rest together
    statuses = [_me(client, token).status_code for token in tokens]
    assert statuses == [200, 401, 200, 200]
