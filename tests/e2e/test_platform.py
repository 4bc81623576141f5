"""The platform as a user meets it: started by `orchestrator up`, used over real HTTP through Ray Serve."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_ENV
from tests.e2e.conftest import E2E_REPLICAS, Platform

PASSWORD = "correct-horse-battery"


def _assert_envelope(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["correlation_id"] == response.headers["X-Correlation-ID"]


def test_health_through_serve_checks_every_dependency(http: httpx.Client) -> None:
    for path in ("/health", "/api/v1/health", "/api/v1/system/health"):
        response = http.get(path)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "healthy", body
        expected = {"database", "ray", "serve", "queues"} | ({"redis"} if os.environ.get(REDIS_ENV) else set())
        assert set(body["checks"]) == expected
        assert all(check["status"] == "pass" for check in body["checks"].values())


def test_register_login_and_profile_over_http(http: httpx.Client) -> None:
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    created = http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "firstName": "E2E"})
    assert created.status_code == 201, created.text
    tokens = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200
    me = http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
    assert me.status_code == 200
    assert me.json()["email"] == email and me.json()["first_name"] == "E2E"


def test_errors_over_http_use_the_envelope(http: httpx.Client) -> None:
    _assert_envelope(http.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    _assert_envelope(http.get("/api/v1/users/me"), 401, "AUTHENTICATION_ERROR")
    _assert_envelope(
        http.get("/api/v1/users/me", headers={"Authorization": "Bearer not.a.jwt"}), 401, "AUTHENTICATION_ERROR"
    )
    _assert_envelope(
        http.post("/api/v1/auth/login", content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "VALIDATION_ERROR",
    )
    _assert_envelope(http.post("/api/v1/auth/login", json={"email": "x"}), 422, "VALIDATION_ERROR")
    _assert_envelope(
        http.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "x"}),
        401,
        "AUTHENTICATION_ERROR",
    )
    assert http.get("/health", headers={"X-Correlation-ID": "e2e-1"}).headers["X-Correlation-ID"] == "e2e-1"


def test_openapi_docs_are_served(http: httpx.Client) -> None:
    assert http.get("/docs").status_code == 200
    assert "/api/v1/auth/register" in http.get("/openapi.json").json()["paths"]


def test_cli_status_reports_the_running_platform(platform: Platform) -> None:
    result = platform.cli("status")
    assert result.returncode == 0, result.stderr
    assert f"{platform.base_url}/api/v1" in result.stdout
    assert "health           healthy" in result.stdout


def test_a_second_up_on_the_same_data_dir_is_refused(platform: Platform) -> None:
    result = platform.cli("up", timeout=60)
    assert result.returncode == 1
    assert "already running" in result.stderr


def test_migrations_are_current(platform: Platform) -> None:
    result = platform.cli("db", "current")
    assert result.returncode == 0, result.stderr
    current, head = result.stdout.split()[1], result.stdout.split()[3]
    assert current == head


def test_requests_are_spread_over_both_api_replicas(http: httpx.Client) -> None:
    replicas = set()
    deadline = time.monotonic() + 30
    while len(replicas) < E2E_REPLICAS and time.monotonic() < deadline:
        replicas.add(http.get("/health").json()["checks"]["serve"]["details"]["replica"])
    assert len(replicas) == E2E_REPLICAS


@pytest.mark.skipif(not os.environ.get(REDIS_ENV), reason=f"needs {REDIS_ENV}: without Redis limits are per replica")
def test_login_limit_holds_across_replicas_sharing_redis(http: httpx.Client) -> None:
    email = f"limit-{uuid.uuid4().hex[:10]}@example.com"
    statuses = [
        http.post("/api/v1/auth/login", json={"email": email, "password": "wrong-password"}).status_code
        for _ in range(16)
    ]
    # ORCHESTRATOR_RATE_LIMIT_AUTH defaults to 10 per 15 minutes per IP + account.
    assert statuses.count(401) == 10, statuses
    assert statuses.count(429) == 6


def test_every_response_has_rate_limit_headers(http: httpx.Client) -> None:
    names = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Window")
    for response in (http.get("/health"), http.get("/api/v1/users/me"), http.get("/api/v1/nope")):
        assert all(name in response.headers for name in names), response.headers


def test_admin_create_from_the_cli_makes_an_account_that_can_log_in(platform: Platform, http: httpx.Client) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    env = {**platform.env, "ORCHESTRATOR_ADMIN_PASSWORD": PASSWORD}
    result = subprocess.run(
        [*_cli_args(), "admin", "create", "--email", email, "--role", "agent"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"created agent {email}" in result.stdout
    tokens = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200 and tokens.json()["user"]["role"] == "agent"
    again = subprocess.run(
        [*_cli_args(), "admin", "create", "--email", email],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 1 and "CONFLICT" in again.stderr


def _cli_args() -> list[str]:
    return [str(Path(sys.executable).parent / "orchestrator")]


def test_agents_registry_over_http(http: httpx.Client) -> None:
    email = f"agents-{uuid.uuid4().hex[:8]}@example.com"
    http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    token = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    created = http.post(
        "/api/v1/agents",
        headers=headers,
        json={"name": "Ops bot", "type": "ops", "capabilities": ["kubernetes", "helm"]},
    )
    assert created.status_code == 201, created.text
    listed = http.get("/api/v1/agents", params={"capabilities": "helm", "type": "ops"}, headers=headers).json()
    assert [agent["id"] for agent in listed["agents"]] == [created.json()["id"]]
