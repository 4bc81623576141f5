"""Rate limits over HTTP: headers everywhere, 429 with Retry-After, classes, tiers, and Redis shared
between API replicas (no request beyond the limit is accepted)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update

from persistence.db import Database
from persistence.models import User
from serve_app.app import create_app
from tests.conftest import free_port, make_settings
from tests.integration.test_auth_flow import PASSWORD, assert_error, bearer, login, register

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Window")


@contextmanager
def app_client(
    tmp_path: Path,
    database_url: str,
    redis_url: str = "",
    prefix: str = "",
    peer: tuple[str, int] = ("testclient", 50000),
    **limits: object,
) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path,
        database_url,
        rate_limits=limits,
        redis={"redis_url": redis_url, "redis_key_prefix": prefix or f"test-{secrets.token_hex(4)}:"},
    )
    with TestClient(create_app(settings), client=peer) as client:
        yield client


def _wrong_login(client: TestClient, email: str):
    return client.post("/api/v1/auth/login", json={"email": email, "password": "not-the-password"})


def test_every_response_carries_rate_limit_headers(client: TestClient) -> None:
    responses = [
        client.get("/health"),
        client.post("/api/v1/auth/register", json={"email": "h@example.com", "password": PASSWORD}),
        client.get("/api/v1/users/me"),
        client.get("/api/v1/nowhere"),
        client.delete("/api/v1/auth/login"),
        client.post("/api/v1/auth/login", content=b"{", headers={"Content-Type": "application/json"}),
        client.post("/api/v1/auth/login", json={}),
        client.get("/api/v1/users/me", headers=bearer(login(client, "h@example.com")["access_token"])),
    ]
    for response in responses:
        missing = [name for name in HEADERS if name not in response.headers]
        assert not missing, (response.request.method, response.request.url.path, response.status_code, missing)
    assert responses[-1].headers["X-RateLimit-Window"] == "3600"


def test_login_is_limited_per_ip_and_account(tmp_path: Path, db: Database, database_url: str) -> None:
    with app_client(tmp_path, database_url, rate_limit_auth="3/15m") as client:
        register(client, "victim@example.com")
        assert [_wrong_login(client, "victim@example.com").status_code for _ in range(3)] == [401] * 3
        blocked = _wrong_login(client, "victim@example.com")
        assert_error(blocked, 429, "RATE_LIMIT_EXCEEDED")
        assert int(blocked.headers["Retry-After"]) > 0
        assert blocked.headers["X-RateLimit-Remaining"] == "0"
        # Even the right password waits now; another account is not affected.
        right = client.post("/api/v1/auth/login", json={"email": "victim@example.com", "password": PASSWORD})
        assert right.status_code == 429
        assert _wrong_login(client, "other@example.com").status_code == 401


@pytest.mark.parametrize("shared", [False, True], ids=["per-replica", "redis"])
def test_failed_logins_from_many_addresses_slow_the_attacker_not_the_owner(
    tmp_path: Path, db: Database, database_url: str, request: pytest.FixtureRequest, shared: bool
) -> None:
    """Credential stuffing: each guess from another address (through the trusted proxy on loopback)."""
    redis_url = request.getfixturevalue("redis_url") if shared else ""
    prefix = f"test-{secrets.token_hex(4)}:"
    with app_client(tmp_path, database_url, redis_url, prefix, ("127.0.0.1", 40000), login_free_failures=4) as client:
        register(client, "victim@example.com")
        owner = {"X-Forwarded-For": "192.0.2.10"}
        assert client.post("/api/v1/auth/login", headers=owner, json=_victim(PASSWORD)).status_code == 200

        def guess(n: int):
            headers = {"X-Forwarded-For": f"203.0.113.{n}"}
            return client.post("/api/v1/auth/login", headers=headers, json=_victim(f"guess-{n}"))

        assert [guess(n).status_code for n in range(4)] == [401] * 4
        slowed = guess(5)  # the fourth failure set a 1-second wait
        error = assert_error(slowed, 429, "RATE_LIMIT_EXCEEDED")
        assert "failed logins for this account" in error["message"] and int(slowed.headers["Retry-After"]) >= 1
        # The owner, from the address they logged in from before, is not locked out.
        assert client.post("/api/v1/auth/login", headers=owner, json=_victim(PASSWORD)).status_code == 200
        # Their success forgot the failures: the next guess is answered (wrong) at once.
        assert guess(6).status_code == 401
    if shared:
        keys = redis.Redis.from_url(redis_url).keys(f"{prefix}*")
        assert keys and not any(b"victim" in key for key in keys)  # accounts are hashed, not named
        redis.Redis.from_url(redis_url).delete(*keys)


def _victim(password: str) -> dict[str, str]:
    return {"email": "victim@example.com", "password": password}


def test_general_limit_is_per_caller_and_scaled_by_tier(tmp_path: Path, db: Database, database_url: str) -> None:
    with app_client(tmp_path, database_url, rate_limit_general="4/h") as client:
        register(client, "free@example.com")
        register(client, "pro@example.com")
        with db.transaction() as session:
            session.execute(update(User).where(User.email == "pro@example.com").values(subscription_tier="pro"))
        free = bearer(login(client, "free@example.com")["access_token"])
        pro = bearer(login(client, "pro@example.com")["access_token"])
        statuses = [client.get("/api/v1/users/me", headers=free).status_code for _ in range(5)]
        assert statuses == [200] * 4 + [429]
        response = client.get("/api/v1/users/me", headers=pro)
        assert response.status_code == 200 and response.headers["X-RateLimit-Limit"] == "40"


def test_failed_authentication_is_limited_per_ip(tmp_path: Path, db: Database, database_url: str) -> None:
    with app_client(tmp_path, database_url, rate_limit_general="3/h") as client:
        statuses = [client.get("/api/v1/users/me", headers=bearer(f"guess-{n}")).status_code for n in range(5)]
        assert statuses == [401, 401, 401, 429, 429]


def test_per_route_overrides_apply_to_that_route_only(tmp_path: Path, db: Database, database_url: str) -> None:
    with app_client(tmp_path, database_url, rate_limit_routes={"GET /api/v1/users/me": "2/m"}) as client:
        register(client, "route@example.com")
        token = bearer(login(client, "route@example.com")["access_token"])
        assert [client.get("/api/v1/users/me", headers=token).status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/api/v1/organizations", headers=token).status_code == 200


def test_limits_hold_across_replicas_sharing_redis(
    tmp_path: Path, db: Database, database_url: str, redis_url: str
) -> None:
    prefix = f"test-{secrets.token_hex(4)}:"
    with (
        app_client(tmp_path / "a", database_url, redis_url, prefix, rate_limit_auth="10/15m") as replica_a,
        app_client(tmp_path / "b", database_url, redis_url, prefix, rate_limit_auth="10/15m") as replica_b,
    ):
        register(replica_a, "shared@example.com")
        statuses = [_wrong_login(replica, "shared@example.com").status_code for replica in (replica_a, replica_b) * 15]
        assert statuses.count(401) == 10, statuses
        assert statuses.count(429) == 20
    redis.Redis.from_url(redis_url).delete(*redis.Redis.from_url(redis_url).keys(f"{prefix}*"))


def test_without_redis_each_replica_counts_on_its_own(tmp_path: Path, db: Database, database_url: str) -> None:
    """The documented fallback: limits hold per replica."""
    with (
        app_client(tmp_path / "a", database_url, rate_limit_auth="3/15m") as replica_a,
        app_client(tmp_path / "b", database_url, rate_limit_auth="3/15m") as replica_b,
    ):
        statuses = [_wrong_login(replica, "solo@example.com").status_code for replica in (replica_a, replica_b) * 5]
        assert statuses.count(401) == 6


def test_an_unreachable_redis_falls_back_instead_of_failing(tmp_path: Path, db: Database, database_url: str) -> None:
    with app_client(tmp_path, database_url, f"redis://127.0.0.1:{free_port()}/0", rate_limit_auth="2/15m") as client:
        statuses = [_wrong_login(client, "down@example.com").status_code for _ in range(3)]
        assert statuses == [401, 401, 429]


def test_seed_004s_profile_limits_requirements_files_and_archives(
    tmp_path: Path, db: Database, database_url: str
) -> None:
    limits = {"rate_limit_requirements": "2/m", "rate_limit_files": "3/m", "rate_limit_archives": "1/m"}
    with app_client(tmp_path, database_url, **limits) as client:
        register(client, "root@example.com")  # the platform's admin
        register(client, "seed4@example.com")
        token = bearer(login(client, "seed4@example.com")["access_token"])
        submitted = [
            client.post("/api/v1/requirements", headers=token, json={"requirement": "Hello"}) for _ in range(3)
        ]
        assert [r.status_code for r in submitted] == [201, 201, 429]
        assert submitted[2].json()["error"]["code"] == "RATE_LIMIT_EXCEEDED" and "Retry-After" in submitted[2].headers
        project = submitted[0].json()["project_id"]
        listed = [client.get(f"/api/v1/projects/{project}/workspace/files", headers=token) for _ in range(4)]
        assert [r.status_code for r in listed] == [200, 200, 200, 429]
        archives = [client.get(f"/api/v1/projects/{project}/archives", headers=token) for _ in range(2)]
        assert [r.status_code for r in archives] == [200, 429]
        assert client.get("/api/v1/users/me", headers=token).status_code == 200  # the general budget is apart
