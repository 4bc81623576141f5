"""The SDK against the real API in-process (FastAPI's test transport, no Ray, no network): the sync client's
namespaces, typed errors, paging and the login/refresh flow with real tokens, on each database backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from orchestrator_sdk import AuthorizationError, Client, Conflict, NotFound, ValidationError

from persistence.db import Database
from serve_app.app import create_app
from tests.conftest import make_settings

PASSWORD = "correct horse 1"


@pytest.fixture
def app_client(tmp_path: Path, db: Database, database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path, database_url)), raise_server_exceptions=False) as client:
        yield client


class _InProcess(httpx.BaseTransport):
    """The test client's transport, its answers read whole (it has its own stream type)."""

    def __init__(self, app_client: TestClient) -> None:
        self.inner = app_client._transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        return httpx.Response(response.status_code, headers=response.headers, content=response.read())


def _sdk(app_client: TestClient, email: str) -> Client:
    assert app_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    return Client("http://testserver", email=email, password=PASSWORD, transport=_InProcess(app_client))


def test_namespaces_errors_and_paging_against_the_app(app_client) -> None:
    admin = _sdk(app_client, "admin@example.com")  # the first account is the platform's admin
    user = _sdk(app_client, "user@example.com")
    project = user.projects.create(name="SDK project")
    created = [user.tasks.create(title=f"task {i}", priority="low", project_id=project.id).id for i in range(5)]
    assert [t.id for t in user.tasks.list(project_id=project.id, limit=2)] == created[::-1]  # newest first
    page = user.tasks.page(3, limit=2, project_id=project.id)
    assert len(page) == 1 and not page.has_next and page.pagination["pages"] == 3
    assert [t.id for t in user.projects.tasks(project.id)] == created[::-1]

    updated = user.tasks.update(created[0], {"title": "renamed"})
    assert updated.title == "renamed" and user.tasks.get(created[0]).title == "renamed"
    assert user.tasks.set_status(created[0], "failed", error="no").status == "failed"

    with pytest.raises(NotFound) as missing:
        admin.projects.get("00000000-0000-7000-8000-000000000000")
    assert missing.value.correlation_id and missing.value.status == 404
    with pytest.raises(ValidationError) as invalid:
        user.tasks.create(title="x", priority="whenever")
    assert invalid.value.details[0]["field"] == "priority"

    urgent = user.tasks.create(title="Deploy", priority="high")  # P1: gated by an approval
    assert urgent.status == "awaiting_approval"
    [approval] = [a for a in admin.approvals.pending() if a.task_id == urgent.id]
    with pytest.raises(AuthorizationError):
        user.approvals.approve(approval.id)  # not one's own request
    assert admin.approvals.approve(approval.id).status == "approved"
    with pytest.raises(Conflict):
        admin.approvals.reject(approval.id, reason="too late")
    assert approval.id in [a.id for a in admin.approvals.history()]

    published = user.events.publish("sdk.tested", {"ok": True})
    assert published.event_type == "sdk.tested"
    assert any(e.event_type == "sdk.tested" for e in user.events.list(type="sdk.tested"))


def test_login_refresh_and_login_again_with_real_tokens(app_client) -> None:
    sdk = _sdk(app_client, "me@example.com")
    assert sdk.users.me().email == "me@example.com"
    first = sdk._credentials.access_token

    sdk._credentials.expires_at = time.time()  # about to expire: refreshed before the next call
    assert sdk.users.me().email == "me@example.com"
    assert sdk._credentials.access_token != first
    assert app_client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {first}"}).status_code == 200

    # Logging out elsewhere revokes the access token and the refresh family: the client logs in again.
    revoked = sdk._credentials.access_token
    headers = {"Authorization": f"Bearer {revoked}"}
    assert app_client.post("/api/v1/auth/logout", headers=headers).status_code == 200
    assert sdk.users.me().email == "me@example.com"
    assert sdk._credentials.access_token not in (first, revoked)
