"""Observability on each real database: a request's trace (server span with the correlation id, a span per SQL
statement under it), trace context carried into an actor's message, and the admin-only system routes
answering with figures counted from recorded rows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import ray
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import event, select

from actors import router_client
from actors.router import TaskRouter
from core import telemetry_setup, tracing
from core.clock import utcnow
from persistence.db import Database
from persistence.models import Approval, Event, Execution, ExecutionStep, Task
from serve_app.app import create_app, fastapi_telemetry
from services.ports import TaskSubmitted
from tests.conftest import make_settings
from tests.integration.test_agents import _agent, _user
from tests.integration.test_auth_flow import assert_error
from tests.integration.test_tasks_agents import _active

SYSTEM = "/api/v1/system"


@pytest.fixture
def traced(tmp_path: Path, db: Database, database_url: str) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    """The app with this process traced into memory; accounts after the first (the admin) are `user`s."""
    exporter = InMemorySpanExporter()
    telemetry_setup.install(exporter, service="orchestrator-api", batch=False)
    settings = make_settings(tmp_path, database_url, auth={"default_role": "user"})
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client, exporter
    finally:
        telemetry_setup.reset()


def test_a_request_is_one_server_span_with_its_sql_statements_under_it(traced) -> None:
    client, exporter = traced
    admin = _user(client, "root")
    exporter.clear()

    response = client.get("/api/v1/users/me", headers={**admin, "X-Correlation-ID": "trace-me-1"})
    assert response.status_code == 200

    spans = exporter.get_finished_spans()
    [server] = [span for span in spans if span.kind is SpanKind.SERVER]
    assert server.attributes[tracing.CORRELATION_ATTRIBUTE] == "trace-me-1"
    assert server.attributes["http.route"] == "/api/v1/users/me"
    assert server.attributes["http.response.status_code"] == 200
    statements = [span for span in spans if span.kind is SpanKind.CLIENT]
    assert statements, "the route reads the user: at least one SQL statement span"
    for span in statements:
        assert span.context.trace_id == server.context.trace_id
        assert span.parent is not None and span.parent.span_id == server.context.span_id
        assert span.attributes["db.operation"] == "SELECT"
        assert span.attributes[tracing.CORRELATION_ATTRIBUTE] == "trace-me-1"
    assert any("FROM users" in span.attributes["db.statement"] for span in statements)


def test_an_actor_message_continues_the_request_trace_with_its_correlation_id(traced, db, monkeypatch) -> None:
    client, exporter = traced
    admin = _user(client, "root")
    exporter.clear()
    messages: list[tuple[TaskSubmitted, dict | None]] = []

    class Mailbox:  # Ray's transport aside: what the route puts in the mailbox is what the router receives
        put = messages.append

    monkeypatch.setattr(router_client.ray, "is_initialized", lambda: True)
    monkeypatch.setattr(router_client, "_router_mailbox", lambda _settings: Mailbox)

    response = client.post(
        "/api/v1/tasks", headers={**admin, "X-Correlation-ID": "trace-me-2"}, json={"type": "bugfix", "title": "traced"}
    )
    assert response.status_code == 201, response.text
    [server] = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]
    [(message, carrier)] = messages
    task_id, new = message.task_id, message.task  # its routing fields, so the router need not read it back
    assert (type(message), task_id, new.id, new.type) == (TaskSubmitted, response.json()["id"], task_id, "bugfix")
    assert carrier["correlation_id"] == "trace-me-2"
    assert carrier["traceparent"].split("-")[1] == f"{server.context.trace_id:032x}"

    # The router, in another thread standing for its process (none of the request's context), with an agent
    # free to take the task: queueing and the assignment's writes join the request's trace.
    agent = _agent(client, admin, mode="external", type="dev")
    _active(db, agent["id"])
    settings = client.app.state.context.settings
    router = TaskRouter(
        settings.model_copy(update={"agents": settings.agents.model_copy(update={"router_tick_s": 3600})})
    )
    assigned = []
    worker = threading.Thread(target=lambda: assigned.append(router.deliver(messages)))
    worker.start()
    worker.join()
    assert assigned == [1]

    spans = exporter.get_finished_spans()
    [consumer] = [span for span in spans if span.name == "router.submit"]
    [assignment] = [span for span in spans if span.name == "router.assign"]
    for span in (consumer, assignment):
        assert span.context.trace_id == server.context.trace_id
        assert span.parent.span_id == server.context.span_id
        assert span.attributes[tracing.CORRELATION_ATTRIBUTE] == "trace-me-2"
    writes = [s for s in spans if s.parent is not None and s.parent.span_id == assignment.context.span_id]
    assert any(span.attributes["db.operation"] == "UPDATE" for span in writes)
    with db.session() as session:
        [event] = session.scalars(select(Event).where(Event.event_type == "task.assigned")).all()
        assert event.subject_id == task_id and event.correlation_id == "trace-me-2"


def test_without_tracing_the_database_has_no_statement_hooks(db: Database) -> None:
    assert not tracing.enabled()
    assert not event.contains(db.engine, "before_cursor_execute", tracing._before_statement)
    assert tracing.carrier() is None
    assert fastapi_telemetry()["tracing"] is False


def test_system_routes_are_for_admins_only(traced) -> None:
    client, _ = traced
    _user(client, "root")
    user = _user(client, "carol")
    for route in ("status", "metrics", "logs"):
        assert_error(client.get(f"{SYSTEM}/{route}"), 401, "AUTHENTICATION_ERROR")
        assert_error(client.get(f"{SYSTEM}/{route}", headers=user), 403, "AUTHORIZATION_ERROR")
    assert client.get(f"{SYSTEM}/health").status_code == 200  # still public


def test_system_metrics_count_the_recorded_rows(traced, db: Database) -> None:
    client, _ = traced
    admin = _user(client, "root")
    owner = client.get("/api/v1/users/me", headers=admin).json()["id"]
    now = utcnow()
    owned = {"owner_type": "user", "owner_id": owner}
    with db.transaction() as session:
        tasks = [
            Task(title=f"t{n}", type="bugfix", priority=priority, status=status, **owned)
            for n, (priority, status) in enumerate(
                [("P1", "pending"), ("P1", "pending"), ("P3", "pending"), ("P2", "in_progress"), ("P2", "completed")]
            )
        ]
        session.add_all(tasks)
        session.flush()
        session.add(
            Approval(
                task_id=tasks[0].id,
                priority="P1",
                status="pending",
                requested_by=owner,
                expires_at=now + timedelta(hours=1),
                **owned,
            )
        )
        session.add(
            Approval(
                task_id=tasks[1].id,
                priority="P1",
                status="approved",
                requested_by=owner,
                expires_at=now + timedelta(hours=1),
                **owned,
            )
        )
        runs = [
            Execution(workflow_version="1.0.0", graph={}, status=status, input={}, **owned)
            for status in ("running", "completed", "completed", "failed")
        ]
        session.add_all(runs)
        session.flush()
        durations = [(10.0, 5), (20.0, 4), (30.0, 3), (40.0, 2), (100.0, 1), (9999.0, 120)]  # (ms, minutes ago)
        session.add_all(
            ExecutionStep(
                execution_id=runs[0].id,
                seq=seq,
                node_id=f"n{seq}",
                node_type="transform",
                status="completed",
                idempotency_key=f"k{seq}",
                started_at=now - timedelta(minutes=ago),
                duration_ms=ms,
            )
            for seq, (ms, ago) in enumerate(durations)
        )
    client.get("/api/v1/users/me", headers=admin)

    body = client.get(f"{SYSTEM}/metrics", headers=admin).json()

    assert body["task_queue"] == {"pending": {"P1": 2, "P3": 1}, "in_progress": {"P2": 1}}
    assert body["runs_by_status"] == {"running": 1, "completed": 2, "failed": 1}
    assert body["approvals_pending"] == 1
    latency = body["step_latency"]  # the step of two hours ago is outside the window
    assert latency["count"] == 5 and latency["p50_ms"] == 30.0 and latency["p95_ms"] == 100.0
    assert latency["max_ms"] == 100.0
    assert body["webhook_deliveries"] == {}  # the table exists and is empty
    requests = body["requests"]
    assert requests["scope"] == "replica" and requests["window_s"] == 60
    by_route = {route["route"]: route for route in requests["routes"]}
    assert by_route["GET /api/v1/users/me"]["requests"] == 2
    assert requests["requests"] >= 4 and requests["latency_ms"]["p50"] is not None


def test_system_status_and_logs_say_what_ray_they_see(traced) -> None:
    client, _ = traced
    admin = _user(client, "root")

    status = client.get(f"{SYSTEM}/status", headers=admin).json()
    assert status["version"] and status["uptime_s"] >= 0
    if ray.is_initialized():  # a session's Ray started by another test
        assert status["ray"]["connected"] is True and status["ray"]["nodes_alive"] >= 1
    else:
        assert status["ray"] == {"connected": False}
        logs = client.get(f"{SYSTEM}/logs?level=error&limit=5", headers=admin).json()
        assert logs["logs"] == [] and "not connected to Ray" in logs["note"]
    assert_error(client.get(f"{SYSTEM}/logs?level=loud", headers=admin), 422, "VALIDATION_ERROR")
    assert_error(client.get(f"{SYSTEM}/logs?limit=1001", headers=admin), 422, "VALIDATION_ERROR")
    assert_error(client.get(f"{SYSTEM}/logs?service=nginx", headers=admin), 422, "VALIDATION_ERROR")
