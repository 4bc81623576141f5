"""Health over HTTP with real dependencies: passing, degraded by Redis, unhealthy without a database."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from serve_app.app import create_app
from tests.conftest import free_port, make_settings

HEALTH_PATHS = ["/health", "/api/v1/health", "/api/v1/system/health"]


def test_health_reports_each_check_with_its_response_time(client: TestClient) -> None:
    for path in HEALTH_PATHS:
        response = client.get(path)
        assert response.status_code == 200
        body = response.json()
        # Outside Ray (in-process test app) the ray and serve checks warn: degraded, still 200.
        assert body["status"] == "degraded"
        assert body["checks"]["database"]["status"] == "pass"
        assert body["checks"]["ray"]["status"] == "warn"
        assert body["checks"]["queues"]["status"] == "warn"  # no router to ask outside Ray
        assert isinstance(body["checks"]["database"]["response_time"], float)
        assert body["timestamp"].endswith("Z")


def test_unreachable_database_is_unhealthy_with_503(tmp_path: Path) -> None:
    dead = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing?connect_timeout=1"
    settings = make_settings(tmp_path, dead)
    with TestClient(create_app(settings)) as client:
        response = client.get("/health")
        login = client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "x" * 12})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert response.json()["status"] == "unhealthy"
    assert response.json()["checks"]["database"]["status"] == "fail"
    # A route that needs the database answers 503 in the envelope, with when to try again (not a 500).
    assert login.status_code == 503 and int(login.headers["Retry-After"]) > 0
    assert login.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


def test_redis_is_checked_when_configured(tmp_path: Path, db, database_url: str, redis_url: str) -> None:
    settings = make_settings(tmp_path, database_url, redis={"redis_url": redis_url})
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json()["checks"]["redis"]["status"] == "pass"


def test_unreachable_redis_degrades_but_does_not_fail(tmp_path: Path, db, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, redis={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with TestClient(create_app(settings)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"]["status"] == "fail"
    assert response.json()["status"] == "degraded"


def test_the_api_reference_is_served_as_swagger_ui_and_redoc(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200 and "/openapi.json" in page.text, path
