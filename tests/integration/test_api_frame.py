"""The conventions every route shares: envelope, correlation id, aliases, protection, docs."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
from fastapi.testclient import TestClient
from starlette.concurrency import run_in_threadpool

from core.settings import Settings
from schedulers.task_lifecycle import PRIORITY_WORDS, TaskStatus
from serve_app.app import create_app
from serve_app.routing import api_routes, minimum_role, protected_router
from services.agents import FRAMEWORKS
from services.principal import Role
from services.tasks import REPORTABLE
from tests.integration.test_auth_flow import assert_error


def test_unknown_route_and_wrong_method_use_the_envelope(client: TestClient) -> None:
    assert_error(client.get("/api/v1/does-not-exist"), 404, "NOT_FOUND")
    response = client.delete("/api/v1/auth/login")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "POST"
    # Every method of the path, although each is a route of its own.
    options = client.options("/api/v1/agents/some-id")
    assert_error(options, 405, "METHOD_NOT_ALLOWED")
    assert options.headers["Allow"] == "DELETE, GET, PATCH, PUT"


def test_malformed_json_is_400_and_wrong_types_are_422(client: TestClient) -> None:
    response = client.post(
        "/api/v1/auth/login", content=b'{"email": "a@b.c", ', headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    error = assert_error(client.post("/api/v1/auth/login", json={"email": 5, "password": []}), 422, "VALIDATION_ERROR")
    assert {detail["field"] for detail in error["details"]} == {"email", "password"}
    assert_error(client.post("/api/v1/auth/login", json=["not", "an", "object"]), 422, "VALIDATION_ERROR")


def test_correlation_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Correlation-ID": "trace-42"}).headers["X-Correlation-ID"] == "trace-42"
    assert client.get("/health", headers={"X-Request-ID": "req-7"}).headers["X-Correlation-ID"] == "req-7"
    generated = client.get("/health").headers["X-Correlation-ID"]
    assert len(generated) == 36


def test_unexpected_exceptions_become_a_500_without_internals(settings: Settings) -> None:
    app = create_app(settings)
    crash = protected_router(resource=None)

    @crash.get("/crash")
    def _crash() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    app.include_router(crash, prefix="/api/v1")
    with TestClient(app, raise_server_exceptions=False) as client:
        client.post("/api/v1/auth/register", json={"email": "c@example.com", "password": "correct-horse-battery"})
        token = client.post(
            "/api/v1/auth/login", json={"email": "c@example.com", "password": "correct-horse-battery"}
        ).json()
        response = client.get(
            "/api/v1/crash", headers={"Authorization": f"Bearer {token['access_token']}", "X-Correlation-ID": "crash-1"}
        )
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert error["correlation_id"] == "crash-1"
    assert "secret" not in response.text and "Traceback" not in response.text


def test_admin_routes_declare_their_minimum_role(client: TestClient) -> None:
    roles = {
        (route.path, method): minimum_role(route, method)
        for route in api_routes(client.app)
        for method in route.methods
    }
    assert roles[("/api/v1/users", "GET")] is Role.admin
    assert roles[("/api/v1/users/me", "GET")] is Role.user


def test_a_route_without_protection_refuses_to_start(settings: Settings) -> None:
    from fastapi import APIRouter

    from serve_app.routing import assert_routes_protected

    app = create_app(settings)
    open_router = APIRouter()

    @open_router.get("/oops")
    def _oops() -> None: ...

    app.include_router(open_router, prefix="/api/v1")
    with pytest.raises(RuntimeError, match="/api/v1/oops"):
        assert_routes_protected(app)


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/v1/auth/login" in spec["paths"]
    assert "/api/v1/users/me" in spec["paths"]
    # Each error status a route can answer is in its responses (docs/api.md "Errors").
    status_report = spec["paths"]["/api/v1/tasks/{task_id}/status"]["patch"]["responses"]
    assert {"400", "401", "403", "404", "409", "413", "422", "429", "503"} <= set(status_report)
    assert "INVALID_TRANSITION" in status_report["409"]["description"]
    listing = spec["paths"]["/api/v1/tasks"]["get"]["responses"]
    assert "404" not in listing and "409" not in listing and "503" in listing


def test_openapi_states_the_rules_the_routes_check(settings: Settings) -> None:
    """The document's enums, patterns and bounds come from what the routes validate with (docs/api.md "Errors"),
    so a value it allows is not refused for its form: spot checks of each kind."""
    configured = settings.with_overrides(auth={"service_token_max_ttl_s": 7200})
    spec = create_app(configured).openapi()
    schemas = spec["components"]["schemas"]
    assert schemas["AgentCreate"]["properties"]["framework"]["anyOf"][0]["enum"] == list(FRAMEWORKS)
    # A setting's bound is stated as the platform is configured.
    assert {"type": "integer", "minimum": 60, "maximum": 7200} in schemas["ServiceTokenRequest"]["properties"][
        "expiresIn"
    ]["anyOf"]
    # Every spelling parse_priority reads, and the number 1-10; nothing else.
    text, number = schemas["TaskUpdate"]["properties"]["priority"]["anyOf"]
    assert all(re.search(text["pattern"], word) for word in (*PRIORITY_WORDS, " high ", "p1"))
    assert not any(re.search(text["pattern"], word) for word in ("P4", "0", "11", "soon"))
    assert (number["minimum"], number["maximum"]) == (1, 10)
    # A status report names only what a worker reports, in any spelling parse_status reads.
    report = spec["paths"]["/api/v1/tasks/{task_id}/status"]["patch"]
    [status_query] = [p for p in report["parameters"] if p["name"] == "status"]
    pattern = status_query["schema"]["pattern"]
    assert pattern == schemas["TaskStatusUpdate"]["properties"]["status"]["pattern"]
    assert {status for status in TaskStatus if re.search(pattern, status)} == REPORTABLE
    assert re.search(pattern, "Done") and not re.search(pattern, "awaiting_approval")
    # A stripped text that must not be empty must hold a character other than white space.
    refresh = schemas["RefreshRequest"]["properties"]["refreshToken"]
    assert refresh["pattern"] == r"\S" and not re.search(refresh["pattern"], "   ")
    # Fields that go together: an organization's resource names it.
    assert {"required": ["ownerId"], "properties": {"ownerId": {"type": "string", "pattern": r"\S"}}} in schemas[
        "TaskCreate"
    ]["anyOf"]
    assert "200" in spec["paths"]["/api/v1/projects/{project_id}/members"]["post"]["responses"]


def test_oversized_bodies_are_refused_before_they_are_read(settings: Settings) -> None:
    small = settings.with_overrides(api={"max_request_bytes": 2048})
    with TestClient(create_app(small)) as client:
        big = b'{"email": "a@b.co", "password": "' + b"x" * 4096 + b'"}'
        response = client.post("/api/v1/auth/login", content=big, headers={"Content-Type": "application/json"})
        error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
        assert "2048" in error["message"] and "X-RateLimit-Limit" in response.headers

        def chunks():
            yield b'{"email": "a@b.co", "password": "'
            for _ in range(10):
                yield b"y" * 512
            yield b'"}'

        streamed = client.post("/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
        assert_error(streamed, 413, "PAYLOAD_TOO_LARGE")
        assert client.post("/api/v1/auth/login", json={"email": "a@b.co", "password": "short"}).status_code == 401


def test_sync_work_reuses_worker_threads_on_a_loop_run_forever_as_serve_runs_it(settings: Settings) -> None:
    """Serve runs a replica's event loop with `run_forever` and each request as a task of its own. There,
    anyio used to bind each new worker thread to the request's task and stop it when the request ended:
    a thread per sync route call. The app's lifespan keeps them for the app's life."""
    from uvicorn.config import Config
    from uvicorn.lifespan.on import LifespanOn

    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    lifespan = LifespanOn(Config(create_app(settings), lifespan="on"))

    def on_loop(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    async def a_request() -> threading.Thread:  # what a sync route does: its work in a worker thread
        return await run_in_threadpool(threading.current_thread)

    async def requests(count: int) -> set[threading.Thread]:
        return set(await asyncio.gather(*[asyncio.ensure_future(a_request()) for _ in range(count)]))

    try:
        on_loop(lifespan.startup())
        first = on_loop(requests(8))
        later = set().union(*(on_loop(requests(8)) for _ in range(10)))
        assert len(later) <= 8 and later & first, "a worker thread per request"
        on_loop(lifespan.shutdown())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(timeout=10)
