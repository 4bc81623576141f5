"""The SDK's transport against a fake platform: typed errors, 429 and connection retries, auth refresh."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from orchestrator_sdk import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    Client,
    Conflict,
    InternalError,
    InvalidTransition,
    NotAvailable,
    NotFound,
    OrchestratorClient,
    OrchestratorError,
    RateLimited,
    ValidationError,
    api_url,
)

from tests.sdk.fakes import API, FakePlatform, envelope, task, user


def _client(fake: FakePlatform, **options) -> Client:
    return Client(API, api_key="ao_test", transport=fake.transport(), backoff=0.001, **options)


def test_base_url_and_env_defaults(monkeypatch) -> None:
    assert api_url("http://h:3000") == "http://h:3000/api/v1"
    assert api_url("http://h:3000/api/v1/") == "http://h:3000/api/v1"
    monkeypatch.setenv("ORCHESTRATOR_URL", "http://from-env:9")
    monkeypatch.setenv("ORCHESTRATOR_API_KEY", "ao_env")
    fake = FakePlatform()
    fake.route("GET", "/users/me")(lambda r: httpx.Response(200, json=user()))
    client = Client(transport=fake.transport())
    assert client.base_url == "http://from-env:9/api/v1"
    assert client.users.me().email == "a@example.com"
    assert fake.requests[0].headers["X-API-Key"] == "ao_env"
    assert fake.requests[0].url.host == "from-env"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (404, "NOT_FOUND", NotFound),
        (409, "CONFLICT", Conflict),
        (409, "INVALID_TRANSITION", InvalidTransition),
        (422, "VALIDATION_ERROR", ValidationError),
        (400, "VALIDATION_ERROR", ValidationError),
        (401, "AUTHENTICATION_ERROR", AuthenticationError),
        (500, "INTERNAL_ERROR", InternalError),
        (418, "TEAPOT", OrchestratorError),
    ],
)
def test_errors_are_typed_and_carry_the_envelope(status, code, expected) -> None:
    fake = FakePlatform()
    details = [{"field": "title", "message": "Field is required"}]
    fake.route("GET", "/tasks/x")(lambda r: envelope(status, code, "it went wrong", details, cid="cid-42"))
    with pytest.raises(expected) as caught:
        _client(fake).tasks.get("x")
    error = caught.value
    assert (error.status, error.code, error.message) == (status, code, "it went wrong")
    assert error.details == details and error.correlation_id == "cid-42"
    assert "cid-42" in str(error) and "title: Field is required" in str(error)
    if expected is InvalidTransition:
        assert isinstance(error, Conflict)


def test_a_non_json_error_still_maps_by_status() -> None:
    fake = FakePlatform()
    fake.route("GET", "/tasks/x")(lambda r: httpx.Response(502, text="bad gateway", headers={"X-Correlation-ID": "c"}))
    with pytest.raises(InternalError) as caught:
        _client(fake, max_retries=0).tasks.get("x")
    assert caught.value.status == 502 and caught.value.correlation_id == "c"


def test_429_waits_for_retry_after_then_succeeds() -> None:
    fake = FakePlatform()
    answers = iter([envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", headers={"Retry-After": "0.05"})] * 2)
    fake.route("POST", "/tasks")(lambda r: next(answers, None) or httpx.Response(201, json={"id": "t1"}))
    started = time.monotonic()
    assert _client(fake).tasks._c._call("POST", "/tasks", json={"title": "x"}) == {"id": "t1"}
    assert time.monotonic() - started >= 0.1
    assert len(fake.calls("POST", "/tasks")) == 3


def test_429_gives_up_after_the_bound_with_retry_after() -> None:
    fake = FakePlatform()
    fake.route("GET", "/users/me")(
        lambda r: envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", headers={"Retry-After": "0.01"})
    )
    with pytest.raises(RateLimited) as caught:
        _client(fake, max_retries=2).users.me()
    assert caught.value.retry_after == 0.01 and len(fake.requests) == 3


def test_429_longer_than_the_caller_will_wait_raises_at_once() -> None:
    fake = FakePlatform()
    fake.route("GET", "/users/me")(
        lambda r: envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", headers={"Retry-After": "3600"})
    )
    with pytest.raises(RateLimited):
        _client(fake, max_retry_wait=1).users.me()
    assert len(fake.requests) == 1


def test_idempotent_requests_retry_connection_errors_and_posts_do_not() -> None:
    fake = FakePlatform()
    failures = {"GET": 2, "POST": 1}

    def flaky(request: httpx.Request) -> httpx.Response:
        if failures[request.method] > 0:
            failures[request.method] -= 1
            raise httpx.ReadError("connection reset")
        return httpx.Response(200, json=user())

    fake.route("GET", "/users/me")(flaky)
    fake.route("POST", "/events/publish")(flaky)
    client = _client(fake)
    assert client.users.me().id == "u1"
    assert len(fake.calls("GET", "/users/me")) == 3
    with pytest.raises(APIConnectionError):
        client.events.publish("custom.thing", {"a": 1})
    assert len(fake.calls("POST", "/events/publish")) == 1  # it may have arrived: not sent twice


def test_a_task_is_created_with_an_idempotency_key_so_its_lost_answers_and_503s_are_retried() -> None:
    fake = FakePlatform()
    answers = [httpx.ReadError("connection reset"), envelope(503, "SERVICE_UNAVAILABLE", "restarting")]

    def lossy(request: httpx.Request) -> httpx.Response:
        if answers:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return httpx.Response(201, json=task())

    fake.route("POST", "/tasks")(lossy)
    client = _client(fake)
    assert client.tasks.create(type="bugfix", title="Once").id == "t1"
    sent = fake.calls("POST", "/tasks")
    keys = {call.headers["Idempotency-Key"] for call in sent}
    assert len(sent) == 3 and len(keys) == 1  # one key for the request and its retries
    client.tasks.create(type="bugfix", title="Mine", idempotency_key="order-17")
    assert fake.calls("POST", "/tasks")[-1].headers["Idempotency-Key"] == "order-17"


def test_a_connect_error_is_retried_for_any_method() -> None:
    fake = FakePlatform()
    failures = [1]

    def refused(request: httpx.Request) -> httpx.Response:
        if failures[0]:
            failures[0] -= 1
            raise httpx.ConnectError("connection refused")
        return httpx.Response(201, json={"event_id": "e1", "event_type": "x", "message": "ok"})

    fake.route("POST", "/events/publish")(refused)
    _client(fake)._call("POST", "/events/publish", json={})
    assert len(fake.requests) == 2


def _login_platform(expire_after: int) -> tuple[FakePlatform, list[str]]:
    """Tokens `t1`, `t2` …; each answers 401 after `expire_after` uses."""
    fake, issued, uses = FakePlatform(), [], {}

    def issue(refresh: str | None = None) -> httpx.Response:
        token = f"t{len(issued) + 1}"
        issued.append(token)
        return httpx.Response(
            200,
            json={
                "access_token": token,
                "refresh_token": f"r{len(issued)}",
                "expires_in": 900,
                "token_type": "bearer",
                "user": user(),
            },
        )

    fake.route("POST", "/auth/login")(lambda r: issue())
    fake.route("POST", "/auth/refresh")(
        lambda r: issue() if r.read() and b'"r' in r.content else envelope(401, "AUTHENTICATION_ERROR", "bad")
    )

    def me(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        uses[token] = uses.get(token, 0) + 1
        if token not in issued or uses[token] > expire_after:
            return envelope(401, "AUTHENTICATION_ERROR", "Token expired")
        return httpx.Response(200, json=user())

    fake.route("GET", "/users/me")(me)
    return fake, issued


def test_email_password_logs_in_and_refreshes_on_401() -> None:
    fake, issued = _login_platform(expire_after=1)
    client = Client(API, email="a@example.com", password="pw", transport=fake.transport())
    client.users.me()
    client.users.me()  # t1 expired: refreshed to t2, the call retried once
    assert issued == ["t1", "t2"]
    assert [r.url.path.rsplit("/", 1)[-1] for r in fake.requests] == ["login", "me", "me", "refresh", "me"]
    assert b'"refresh_token":"r1"' in fake.calls("POST", "/auth/refresh")[0].content.replace(b" ", b"")
    assert client.user["email"] == "a@example.com"


def test_async_client_refreshes_on_401_too() -> None:
    fake, issued = _login_platform(expire_after=1)
    client = AsyncClient(API, email="a@example.com", password="pw", transport=fake.transport())

    async def main() -> None:
        await client.users.me()
        await client.users.me()
        await client.aclose()

    asyncio.run(main())
    assert issued == ["t1", "t2"]


def test_a_bad_api_key_raises_authentication_error_without_refresh() -> None:
    fake = FakePlatform()
    fake.route("GET", "/users/me")(lambda r: envelope(401, "AUTHENTICATION_ERROR", "Invalid API key"))
    with pytest.raises(AuthenticationError):
        _client(fake).users.me()
    assert len(fake.requests) == 1


def test_sync_client_works_inside_a_running_event_loop() -> None:
    """As in a Jupyter cell: the kernel's loop is running while the sync client is called."""
    fake = FakePlatform()
    fake.route("GET", "/users/me")(lambda r: httpx.Response(200, json=user()))

    async def cell() -> str:
        asyncio.get_running_loop()
        return _client(fake).users.me().email

    assert asyncio.run(cell()) == "a@example.com"


def test_requirements_on_a_platform_without_them_say_so() -> None:
    fake = FakePlatform()  # an older platform: no requirement or workspace routes
    client = OrchestratorClient("http://fake", transport=fake.transport())
    with pytest.raises(NotAvailable, match="requirements are not available on this platform"):
        client.submit_requirement("Create a simple calculator web app")
    with pytest.raises(NotAvailable, match="workspace files are not available"):
        client.list_workspace_files("some-project")
    fake.route("GET", "/tasks/missing")(lambda r: envelope(404, "NOT_FOUND", "Task not found"))
    with pytest.raises(NotFound):  # the route exists; the task does not
        client.get_task_status("missing")
