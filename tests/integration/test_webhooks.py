"""Webhooks (docs/webhooks.md), on each real database: CRUD and validation, tenancy, SSRF refusal, secrets
masked and encrypted at rest, deliveries enqueued from real events, signed POSTs to a real HTTP receiver,
retries with backoff, dead letters, redelivery, concurrent senders, and the test route."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from core import net
from core.clock import utcnow
from core.crypto import SecretBox
from core.settings import Settings, resolve_secrets
from persistence.db import Database
from persistence.models import Event, Webhook, WebhookDelivery
from serve_app.app import create_app
from serve_app.routing import api_routes, minimum_role
from services import events, webhooks
from services.housekeeping import encrypt_webhook_headers
from services.principal import Role
from tests.conftest import free_port, make_settings
from tests.integration.test_agents import _user
from tests.integration.test_auth_flow import assert_error

WEBHOOKS = "/api/v1/webhooks"
# The accounts and agents a test makes announce themselves; these tests count their own events only.
ANNOUNCEMENTS = ("user.registered", "agent.created")


@pytest.fixture
def settings(tmp_path: Path, db: Database, database_url: str) -> Settings:
    # Loopback receivers are allow-listed; fast backoff so that retries are due within the test.
    return resolve_secrets(
        make_settings(
            tmp_path,
            database_url,
            webhooks={
                "webhook_allowed_hosts": ["127.0.0.1"],
                "webhook_max_attempts": 3,
                "webhook_backoff_base_s": 1.0,
                "webhook_backoff_max_s": 60.0,
                "webhook_timeout_s": 5.0,
            },
        )
    )


class Receiver:
    """A real HTTP endpoint: answers each POST with the next status of `statuses` (the last one repeats)
    and records every request's headers and raw body."""

    def __init__(self, port: int = 0, statuses: tuple[int, ...] = (200,), delay_s: float = 0.0) -> None:
        self.port, self.statuses, self.delay_s = port, list(statuses), delay_s
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def _deliver(db: Database, settings: Settings, **kwargs) -> dict[str, int]:
    async def run() -> dict[str, int]:
        async with httpx.AsyncClient() as client:
            return await webhooks.deliver_due(db, settings, client, **kwargs)

    return asyncio.run(run())


def _relay(db: Database) -> int:
    """What the EventHub's outbox relay does with a batch: enqueue deliveries, mark the events published."""
    with db.transaction() as session:
        batch = events.unpublished(session)
        batch = [event for event in batch if event.event_type not in ANNOUNCEMENTS]
        count = webhooks.enqueue_deliveries(session, batch)
        events.mark_published(session, [event.id for event in batch], streamed=True)
    return count


def _make_due(db: Database) -> None:
    """As if the backoff had elapsed."""
    with db.transaction() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "failed")
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


def _deliveries(db: Database) -> list[WebhookDelivery]:
    with db.session() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at, WebhookDelivery.id)))


def _webhook(client: TestClient, auth: dict, **body) -> dict:
    response = client.post(WEBHOOKS, headers=auth, json={"events": ["*"], **body})
    assert response.status_code == 201, response.text
    return response.json()


def _publish(client: TestClient, auth: dict, event_type: str, payload: dict) -> dict:
    body = {"event_type": event_type, "payload": payload}
    response = client.post("/api/v1/events/publish", headers=auth, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-orchestrator-signature"])


def test_crud_shows_a_generated_secret_once_and_keeps_it_encrypted(client: TestClient, db: Database) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    created = _webhook(
        client,
        alice,
        url="http://127.0.0.1:9/hook",
        events=["task.created", "Task.Completed"],
        active=False,
        headers={"User-Agent": "Acme/2"},
        name="CI",
    )
    assert created["is_active"] is False and created["events"] == ["task.created", "task.completed"]
    secret = created["secret"]
    assert len(secret) == 64 and created["has_secret"] is True

    read = client.get(f"{WEBHOOKS}/{created['id']}", headers=alice).json()
    assert read["secret"] == "••••" + secret[-4:] and read["headers"] == {"User-Agent": "Acme/2"}
    with db.session() as session:
        stored = session.execute(text("SELECT * FROM webhooks")).mappings().one()
    assert secret not in json.dumps({k: str(v) for k, v in stored.items()})  # not in any column, in any form

    given = _webhook(client, alice, url="http://127.0.0.1:9/other", secret="your-webhook-secret", isActive=True)
    assert given["secret"] == "••••cret"  # a secret the client chose is never echoed back
    with db.session() as session:
        row = session.get(Webhook, given["id"])
        assert row is not None and "your-webhook-secret" not in row.secret_encrypted

    listed = client.get(WEBHOOKS, headers=alice).json()
    assert [w["id"] for w in listed["webhooks"]] == [given["id"], created["id"]]
    assert listed["pagination"]["total"] == 2 and all(w["secret"].startswith("••••") for w in listed["webhooks"])
    assert [w["id"] for w in client.get(f"{WEBHOOKS}?isActive=false", headers=alice).json()["webhooks"]] == [
        created["id"]
    ]

    patched = client.patch(f"{WEBHOOKS}/{created['id']}", headers=alice, json={"isActive": True, "events": ["task.*"]})
    assert patched.status_code == 200 and patched.json()["is_active"] and patched.json()["events"] == ["task.*"]
    put = client.put(f"{WEBHOOKS}/{created['id']}", headers=alice, json={"secret": "a-brand-new-secret-value"})
    assert put.json()["secret"] == "••••alue"
    with db.session() as session:
        row = session.get(Webhook, created["id"])
        assert (
            row is not None
            and SecretBox.from_settings(client.app.state.context.settings).decrypt(row.secret_encrypted)
            == "a-brand-new-secret-value"
        )

    assert client.delete(f"{WEBHOOKS}/{created['id']}", headers=alice).json() == {
        "message": "Webhook deleted successfully"
    }
    assert_error(client.get(f"{WEBHOOKS}/{created['id']}", headers=alice), 404, "NOT_FOUND")


def test_custom_header_values_are_encrypted_at_rest_and_sent_in_clear(
    client: TestClient, db: Database, receiver: Receiver
) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    token = "Bearer receiver-credential-0123456789"
    hook = _webhook(client, alice, url=receiver.url, isActive=False, headers={"Authorization": token})
    assert hook["headers"] == {"Authorization": token}  # its owner reads them back
    with db.session() as session:
        stored = session.execute(text("SELECT * FROM webhooks")).mappings().one()
    assert "receiver-credential" not in json.dumps({k: str(v) for k, v in stored.items()})
    assert client.post(f"{WEBHOOKS}/{hook['id']}/test", headers=alice).json()["status"] == "delivered"
    assert receiver.requests[-1][0]["authorization"] == token

    # A row from before migration 0013 holds them in clear until `orchestrator up`'s housekeeping.
    with db.transaction() as session:
        session.execute(update(Webhook).values(headers_encrypted=None, headers={"X-Legacy": "in-clear"}))
    assert client.get(f"{WEBHOOKS}/{hook['id']}", headers=alice).json()["headers"] == {"X-Legacy": "in-clear"}
    box = SecretBox.from_settings(client.app.state.context.settings)
    assert encrypt_webhook_headers(db, box) == 1 and encrypt_webhook_headers(db, box) == 0
    with db.session() as session:
        row = session.get(Webhook, hook["id"])
        assert row is not None and row.headers == {} and "in-clear" not in (row.headers_encrypted or "")
    assert client.get(f"{WEBHOOKS}/{hook['id']}", headers=alice).json()["headers"] == {"X-Legacy": "in-clear"}


def test_invalid_fields_answer_422_naming_each_field(client: TestClient) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    error = assert_error(
        client.post(
            WEBHOOKS,
            headers=alice,
            json={
                "url": "ftp://example.com/x",
                "events": ["Task Created", "task.created"],
                "secret": "short",
                "headers": {"X-Orchestrator-Signature": "forged", "Content-Type": "text/plain", "X-Trace": "ok"},
            },
        ),
        422,
        "VALIDATION_ERROR",
    )
    assert {d["field"] for d in error["details"]} == {
        "url",
        "events",
        "secret",
        "headers.X-Orchestrator-Signature",
        "headers.Content-Type",
    }
    missing = assert_error(
        client.post(WEBHOOKS, headers=alice, json={"url": "http://127.0.0.1/x"}), 422, "VALIDATION_ERROR"
    )
    assert [d["field"] for d in missing["details"]] == ["events"]
    assert [
        d["field"]
        for d in assert_error(
            client.post(WEBHOOKS, headers=alice, json={"url": "http://127.0.0.1/x", "events": []}),
            422,
            "VALIDATION_ERROR",
        )["details"]
    ] == ["events"]
    hook = _webhook(client, alice, url="http://127.0.0.1/x")
    error = assert_error(
        client.patch(f"{WEBHOOKS}/{hook['id']}", headers=alice, json={"events": ["deploy.*", "*."]}),
        422,
        "VALIDATION_ERROR",
    )
    assert [d["field"] for d in error["details"]] == ["events"] and "'*.'" in error["details"][0]["message"]
    assert_error(client.patch(f"{WEBHOOKS}/{hook['id']}", headers=alice, json={"url": None}), 422, "VALIDATION_ERROR")


def test_private_addresses_are_refused_unless_allow_listed(
    client: TestClient, settings: Settings, db: Database, receiver: Receiver
) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    allowed = _webhook(client, alice, url=receiver.url)  # 127.0.0.1 is allow-listed in these tests
    strict = settings.with_overrides(webhooks={"webhook_allowed_hosts": []})
    with TestClient(create_app(strict), raise_server_exceptions=False) as other:
        for url in ("http://127.0.0.1:8000/hook", "http://169.254.169.254/latest/meta-data", "http://10.0.0.5/x"):
            error = assert_error(
                other.post(WEBHOOKS, headers=alice, json={"url": url, "events": ["*"]}), 422, "VALIDATION_ERROR"
            )
            assert (
                error["details"][0]["field"] == "url"
                and "ORCHESTRATOR_WEBHOOK_ALLOWED_HOSTS" in (error["details"][0]["message"])
            )
        public = other.post(WEBHOOKS, headers=alice, json={"url": "https://93.184.216.34/hook", "events": ["*"]})
        assert public.status_code == 201
        other.delete(f"{WEBHOOKS}/{public.json()['id']}", headers=alice)  # nothing is sent to the internet
        error = assert_error(
            other.put(f"{WEBHOOKS}/{allowed['id']}", headers=alice, json={"url": receiver.url}), 422, "VALIDATION_ERROR"
        )
        assert error["details"][0]["field"] == "url"

    # Checked again at delivery: once the allow-list no longer has it, the delivery fails with the reason.
    _publish(client, alice, "deploy.finished", {"ok": True})
    assert _relay(db) == 1
    assert _deliver(db, strict) == {"delivered": 0, "retried": 1, "dead": 0}
    [refused] = _deliveries(db)
    assert refused.status == "failed" and "refused" in (refused.last_error or "") and receiver.requests == []


def test_a_delivery_goes_to_the_address_that_was_checked_not_to_a_second_lookup(
    client: TestClient, settings: Settings, receiver: Receiver, monkeypatch
) -> None:
    """DNS rebinding: the name answers the check with an allowed address and the connection with another.
    The delivery is sent to the checked address, with the name kept in `Host`."""
    real = socket.getaddrinfo

    def answering(address: str):
        def getaddrinfo(host, port, *args, **kwargs):
            if host == "rebind.test":
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
            return real(host, port, *args, **kwargs)

        return getaddrinfo

    monkeypatch.setattr(net, "socket", SimpleNamespace(getaddrinfo=answering("127.0.0.1"), gaierror=socket.gaierror))
    monkeypatch.setattr(socket, "getaddrinfo", answering("127.0.0.2"))  # any other lookup: nothing listens there
    networks = settings.with_overrides(webhooks={"webhook_allowed_hosts": ["127.0.0.1/32"]})
    with TestClient(create_app(networks), raise_server_exceptions=False) as other:
        _user(other, "root")
        alice = _user(other, "alice")
        hook = _webhook(other, alice, url=f"http://rebind.test:{receiver.port}/hook", isActive=False)
        delivery = other.post(f"{WEBHOOKS}/{hook['id']}/test", headers=alice).json()
    assert delivery["status"] == "delivered", delivery
    [(headers, _)] = receiver.requests
    assert headers["host"] == f"rebind.test:{receiver.port}"


def test_other_tenants_webhooks_answer_404(client: TestClient) -> None:
    _user(client, "root")
    alice, bob = _user(client, "alice"), _user(client, "bob")
    hook = _webhook(client, alice, url="http://127.0.0.1:9/hook")
    url = f"{WEBHOOKS}/{hook['id']}"
    attempts = [
        client.get(url, headers=bob),
        client.put(url, headers=bob, json={"name": "x"}),
        client.patch(url, headers=bob, json={"name": "x"}),
        client.delete(url, headers=bob),
        client.get(f"{url}/deliveries", headers=bob),
        client.post(f"{url}/test", headers=bob),
    ]
    for response in attempts:
        assert_error(response, 404, "NOT_FOUND")
    assert client.get(WEBHOOKS, headers=bob).json()["webhooks"] == []
    assert client.get(url, headers=alice).status_code == 200


def test_every_webhook_route_needs_the_user_role_as_api_md_says(client: TestClient) -> None:
    routes = [route for route in api_routes(client.app) if route.path.startswith(WEBHOOKS)]
    assert len(routes) >= 7
    for route in routes:
        for method in route.methods:
            assert minimum_role(route, method) == Role.user, (method, route.path)


def test_events_are_enqueued_for_the_webhooks_whose_owners_may_see_them(client: TestClient, db: Database) -> None:
    _user(client, "root")
    alice, bob = _user(client, "alice"), _user(client, "bob")
    org = client.post("/api/v1/organizations", headers=alice, json={"name": "Acme Corp"}).json()
    everything = _webhook(client, alice, url="http://127.0.0.1:9/all")
    tasks_only = _webhook(client, alice, url="http://127.0.0.1:9/tasks", events=["task.*"])
    inactive = _webhook(client, alice, url="http://127.0.0.1:9/off", isActive=False)
    org_hook = _webhook(
        client,
        alice,
        url="http://127.0.0.1:9/org",
        ownerType="organization",
        ownerId=org["id"],
        events=["project.created"],
    )
    bobs = _webhook(client, bob, url="http://127.0.0.1:9/bob")
    _relay(db)  # events from setting up (registrations, the organization) are not what this test is about
    with db.transaction() as session:
        session.execute(WebhookDelivery.__table__.delete())

    task = client.post("/api/v1/tasks", headers=alice, json={"type": "feature", "title": "Checkout"}).json()
    project = client.post(
        "/api/v1/projects", headers=alice, json={"name": "Shop", "ownerType": "organization", "ownerId": org["id"]}
    ).json()
    _publish(client, bob, "deploy.finished", {"ok": True})
    with db.transaction() as session:  # a platform event: no owner, admins only
        events.emit(session, "system.health", {"status": "healthy"}, source="test")
    _relay(db)

    got = {(d.webhook_id, d.event_type) for d in _deliveries(db)}
    assert (everything["id"], "task.created") in got and (tasks_only["id"], "task.created") in got
    assert (everything["id"], "project.created") in got  # alice is a member of the owning organization
    assert (org_hook["id"], "project.created") in got and (tasks_only["id"], "project.created") not in got
    assert (bobs["id"], "deploy.finished") in got and (everything["id"], "deploy.finished") not in got
    assert not any(hook == inactive["id"] for hook, _ in got)
    assert not any(kind == "system.health" for _, kind in got)
    assert not any(hook == bobs["id"] and kind != "deploy.finished" for hook, kind in got)
    assert not any(hook == org_hook["id"] and kind != "project.created" for hook, kind in got)

    body = json.loads(next(d.body for d in _deliveries(db) if d.webhook_id == org_hook["id"]))
    assert body["event"] == "project.created" and body["data"]["project_id"] == project["id"]
    assert body["organization"] == {"id": org["id"], "name": "Acme Corp"}
    assert body["timestamp"].endswith("Z") and body["correlation_id"]
    assert any(json.loads(d.body)["data"].get("task_id") == task["id"] for d in _deliveries(db))

    # The relay retrying a batch adds nothing.
    with db.transaction() as session:
        relayed = [e for e in session.scalars(select(Event)) if e.event_type not in ANNOUNCEMENTS]
        again = webhooks.enqueue_deliveries(session, relayed)
    assert again == 0


def test_deliveries_are_signed_over_the_raw_body_as_seed_003_verifies(
    client: TestClient, db: Database, settings: Settings, receiver: Receiver
) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    hook = _webhook(client, alice, url=receiver.url, events=["deploy.*"], headers={"X-Team": "payments"})
    payload = {"amount": 1.0, "ratio": 0.5, "tiny": 1e-7, "name": "café ☕", "nested": {"b": 1, "2": [1.0, None]}}
    published = _publish(client, alice, "deploy.finished", payload)
    assert _relay(db) == 1

    assert _deliver(db, settings) == {"delivered": 1, "retried": 0, "dead": 0}
    [(headers, raw)] = receiver.requests
    assert headers["content-type"] == "application/json" and headers["user-agent"] == "Orchestrator-Webhook/1.0"
    assert headers["x-orchestrator-event"] == "deploy.finished" and headers["x-team"] == "payments"
    assert headers["x-orchestrator-event-id"] == published["event_id"] and headers["x-orchestrator-attempt"] == "1"
    [delivery] = _deliveries(db)
    assert headers["x-orchestrator-delivery"] == delivery.id and raw == delivery.body.encode()
    assert _verify(hook["secret"], headers, raw)
    parsed = json.loads(raw)
    assert parsed["id"] == published["event_id"] and parsed["data"]["amount"] == 1 and b'"amount":1,' in raw
    # A receiver that re-serialises the parsed body the way JSON.stringify does signs the same bytes.
    assert _verify(hook["secret"], headers, webhooks.js_json(parsed).encode())
    if shutil.which("node"):  # a JavaScript receiver signing JSON.stringify(req.body) (docs/webhooks.md)
        script = """
const crypto = require('crypto');
function verifyWebhookSignature(payload, signature, secret) {
  const expectedSignature = crypto.createHmac('sha256', secret).update(payload).digest('hex');
  return `sha256=${expectedSignature}` === signature;
}
const req = {body: JSON.parse(require('fs').readFileSync(0, 'utf8'))};
const payload = JSON.stringify(req.body);
process.stdout.write(String(verifyWebhookSignature(payload, process.argv[1], process.argv[2])));
"""
        result = subprocess.run(
            ["node", "-e", script, headers["x-orchestrator-signature"], hook["secret"]],
            input=raw,
            capture_output=True,
            check=True,
        )
        assert result.stdout == b"true"

    assert delivery.status == "delivered" and delivery.last_status_code == 200 and delivery.delivered_at
    assert delivery.next_attempt_at is None and delivery.attempts == 1 and delivery.duration_ms is not None
    listed = client.get(f"{WEBHOOKS}/{hook['id']}/deliveries", headers=alice).json()
    assert [d["status"] for d in listed["deliveries"]] == ["delivered"] and listed["pagination"]["total"] == 1
    assert listed["deliveries"][0]["payload"]["event"] == "deploy.finished"
    read = client.get(f"{WEBHOOKS}/{hook['id']}", headers=alice).json()
    assert read["last_delivery_status"] == "delivered" and read["last_status_code"] == 200
    assert _deliver(db, settings) == {"delivered": 0, "retried": 0, "dead": 0}


def test_a_receiver_that_is_down_gets_the_event_once_it_is_back(
    client: TestClient, db: Database, settings: Settings
) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    receiver = Receiver(port=free_port(), statuses=(503, 200))
    hook = _webhook(client, alice, url=receiver.url)
    _publish(client, alice, "deploy.finished", {"build": 7})
    _relay(db)
    assert webhooks.next_due_in(db) == 0.0

    before = utcnow()
    assert _deliver(db, settings) == {"delivered": 0, "retried": 1, "dead": 0}  # connection refused
    [delivery] = _deliveries(db)
    assert delivery.status == "failed" and delivery.attempts == 1 and delivery.last_status_code is None
    assert "ConnectError" in (delivery.last_error or "")
    # Backoff after the first attempt: base 1 s, half of it jitter.
    assert delivery.next_attempt_at is not None
    assert before + timedelta(seconds=0.5) <= delivery.next_attempt_at <= utcnow() + timedelta(seconds=1)
    due_in = webhooks.next_due_in(db)
    assert due_in is not None and 0 < due_in <= 1
    assert _deliver(db, settings) == {"delivered": 0, "retried": 0, "dead": 0}  # not due yet

    receiver.start()
    try:
        _make_due(db)
        assert _deliver(db, settings) == {"delivered": 0, "retried": 1, "dead": 0}  # 503
        [delivery] = _deliveries(db)
        assert delivery.status == "failed" and delivery.last_status_code == 503 and "HTTP 503" in delivery.last_error
        assert delivery.next_attempt_at is not None and delivery.next_attempt_at >= utcnow() + timedelta(seconds=0.9)
        _make_due(db)
        assert _deliver(db, settings) == {"delivered": 1, "retried": 0, "dead": 0}
    finally:
        receiver.stop()
    [delivery] = _deliveries(db)
    assert delivery.status == "delivered" and delivery.attempts == 3 and delivery.last_error is None
    assert [headers["x-orchestrator-attempt"] for headers, _ in receiver.requests] == ["2", "3"]
    # Retries send identical bytes, with the same event id for the receiver to de-duplicate by.
    assert receiver.requests[0][1] == receiver.requests[1][1] == delivery.body.encode()
    assert len({headers["x-orchestrator-event-id"] for headers, _ in receiver.requests}) == 1
    assert all(_verify(hook["secret"], h, b) for h, b in receiver.requests)
    assert webhooks.next_due_in(db) is None


def test_a_delivery_is_dead_after_the_last_attempt_and_can_be_redelivered(
    client: TestClient, db: Database, settings: Settings
) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    receiver = Receiver(statuses=(500,)).start()
    try:
        hook = _webhook(client, alice, url=receiver.url)
        _publish(client, alice, "deploy.finished", {"build": 8})
        _relay(db)
        results = []
        for _ in range(settings.webhooks.webhook_max_attempts):
            results.append(_deliver(db, settings))
            _make_due(db)
        assert results[-1] == {"delivered": 0, "retried": 0, "dead": 1}
        assert [r["retried"] for r in results[:-1]] == [1] * (settings.webhooks.webhook_max_attempts - 1)
        [delivery] = _deliveries(db)
        assert delivery.status == "dead" and delivery.attempts == 3 and delivery.next_attempt_at is None
        assert _deliver(db, settings) == {"delivered": 0, "retried": 0, "dead": 0} and len(receiver.requests) == 3
        assert webhooks.next_due_in(db) is None
        dead = client.get(f"{WEBHOOKS}/{hook['id']}/deliveries?status=DEAD", headers=alice).json()["deliveries"]
        assert [d["id"] for d in dead] == [delivery.id] and dead[0]["last_status_code"] == 500
        assert_error(
            client.get(f"{WEBHOOKS}/{hook['id']}/deliveries?status=lost", headers=alice), 422, "VALIDATION_ERROR"
        )

        receiver.statuses = [200]
        retried = client.post(f"{WEBHOOKS}/{hook['id']}/deliveries/{delivery.id}/retry", headers=alice)
        assert retried.status_code == 200 and retried.json()["status"] == "pending" and retried.json()["attempts"] == 0
        assert _deliver(db, settings)["delivered"] == 1
        assert_error(
            client.post(f"{WEBHOOKS}/{hook['id']}/deliveries/{delivery.id}/retry", headers=alice),
            409,
            "INVALID_TRANSITION",
        )
        assert_error(client.post(f"{WEBHOOKS}/{hook['id']}/deliveries/nope/retry", headers=alice), 404, "NOT_FOUND")
    finally:
        receiver.stop()


def test_concurrent_senders_never_send_a_delivery_twice(client: TestClient, db: Database, settings: Settings) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    receiver = Receiver(delay_s=0.01).start()
    try:
        _webhook(client, alice, url=receiver.url)
        for number in range(30):
            _publish(client, alice, "deploy.finished", {"build": number})
        assert _relay(db) == 30

        async def race() -> list[dict[str, int]]:
            async with httpx.AsyncClient() as client_a, httpx.AsyncClient() as client_b:
                return await asyncio.gather(
                    *(
                        webhooks.deliver_due(db, settings, http, limit=10)
                        for http in (client_a, client_b, client_a, client_b)
                    )
                )

        results = asyncio.run(race())
        while sum(r["delivered"] for r in results) < 30:  # bounded: every call delivers at least one
            assert any(r["delivered"] for r in results), results
            results.append(_deliver(db, settings))
    finally:
        receiver.stop()
    sent = [headers["x-orchestrator-delivery"] for headers, _ in receiver.requests]
    assert len(sent) == len(set(sent)) == 30
    assert {d.status for d in _deliveries(db)} == {"delivered"}


def test_a_sender_keeps_its_short_lease_while_it_sends_and_a_dead_ones_deliveries_are_due_again_soon(
    client: TestClient, db: Database, settings: Settings, monkeypatch
) -> None:
    """Deliveries claimed together wait for a slow receiver one at a time, longer than the lease: the sender
    renews it, so a second sender meanwhile takes none of them. A sender that dies (cancelled in the middle
    of a request) renews nothing: what it claimed is due again within one request's timeout and the margin."""
    monkeypatch.setattr(webhooks, "LEASE_MARGIN_S", 2.0)  # a 3 s lease, renewed every second
    config = settings.webhooks.model_copy(update={"webhook_timeout_s": 1.0, "webhook_concurrency": 1})
    settings = settings.model_copy(update={"webhooks": config})
    _user(client, "root")
    alice = _user(client, "alice")
    receiver = Receiver(delay_s=0.7).start()
    try:
        _webhook(client, alice, url=receiver.url)
        for number in range(8):
            _publish(client, alice, "deploy.finished", {"build": number})
        assert _relay(db) == 8

        async def slow_and_second() -> list[dict[str, int]]:
            async with httpx.AsyncClient() as first, httpx.AsyncClient() as second:
                sending = asyncio.create_task(webhooks.deliver_due(db, settings, first))
                await asyncio.sleep(3.5)  # past the first lease (3 s): the last three are still unsent
                late = await webhooks.deliver_due(db, settings, second)
                return [await sending, late]

        assert asyncio.run(slow_and_second()) == [
            {"delivered": 8, "retried": 0, "dead": 0},
            {"delivered": 0, "retried": 0, "dead": 0},
        ]
        sent = [headers["x-orchestrator-delivery"] for headers, _ in receiver.requests]
        assert len(sent) == len(set(sent)) == 8

        receiver.delay_s = 5.0  # the next request outlasts the sender
        for number in range(3):
            _publish(client, alice, "deploy.finished", {"build": 10 + number})
        _relay(db)

        async def dies() -> None:
            async with httpx.AsyncClient() as http:
                sending = asyncio.create_task(webhooks.deliver_due(db, settings, http))
                await asyncio.sleep(0.3)
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending

        asyncio.run(dies())
        due_in = webhooks.next_due_in(db)
        assert due_in is not None and 0 < due_in <= 3.0
    finally:
        receiver.stop()


def test_the_test_route_sends_a_signed_event_and_answers_with_the_delivery(
    client: TestClient, receiver: Receiver
) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    hook = _webhook(client, alice, url=receiver.url, events=["task.completed"], isActive=False)
    response = client.post(f"{WEBHOOKS}/{hook['id']}/test", headers=alice)
    assert response.status_code == 200, response.text
    delivery = response.json()
    assert delivery["status"] == "delivered" and delivery["last_status_code"] == 200
    assert delivery["duration_ms"] is not None and delivery["event_type"] == "webhook.test"
    [(headers, raw)] = receiver.requests
    assert headers["x-orchestrator-event"] == "webhook.test" and _verify(hook["secret"], headers, raw)
    assert json.loads(raw)["correlation_id"] == response.headers["X-Correlation-ID"]

    receiver.statuses = [500]
    failed = client.post(f"{WEBHOOKS}/{hook['id']}/test", headers=alice).json()
    assert failed["status"] == "dead" and failed["last_status_code"] == 500 and failed["attempts"] == 1
    listed = client.get(f"{WEBHOOKS}/{hook['id']}/deliveries", headers=alice).json()["deliveries"]
    assert [d["id"] for d in listed] == [failed["id"], delivery["id"]]
