"""The pure parts of observability: log filtering on parsed lines, actor kinds from names, the replica's request
window, spans as JSON lines, and metrics that do nothing outside Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from actors import metrics as actor_metrics
from actors.agent_handles import parse_log_lines
from actors.system_info import actor_kind, level_threshold, select_entries
from core import metrics, telemetry_setup, tracing
from core.context import correlation_id_var
from schedulers.execution_lifecycle import ExecutionStatus
from serve_app.request_stats import RequestStats

LINES = [
    ":actor_name:TaskRouter",
    "2026-11-23T10:00:00.000Z INFO orchestrator.router [-] router started: 0 pending task(s), 1 agent(s)",
    "2026-11-23T10:00:01.000Z DEBUG orchestrator.router [cid-1] routing",
    "2026-11-23T10:00:02.000Z WARNING orchestrator.actors [cid-1] runs not told submit: restarting",
    "2026-11-23T10:00:03.000Z ERROR orchestrator.router [cid-2] dispatch of task t1 to agent a1 failed",
    "Traceback (most recent call last):",
    "RuntimeError: boom",
    "2026-11-23T10:00:04.000Z CRITICAL orchestrator.router [-] giving up",
]


def test_levels_keep_that_level_and_above_newest_first() -> None:
    entries = parse_log_lines(LINES)
    assert entries[1]["correlation_id"] == "cid-1" and entries[0]["correlation_id"] is None

    errors = select_entries(entries, level="error", since=None, limit=100)
    assert [entry["level"] for entry in errors] == ["CRITICAL", "ERROR"]
    assert errors[1]["message"].endswith("RuntimeError: boom")  # the traceback stays with its record
    assert [e["level"] for e in select_entries(entries, level="WARN", since=None, limit=100)] == [
        "CRITICAL",
        "ERROR",
        "WARNING",
    ]
    assert len(select_entries(entries, level="info", since=None, limit=100)) == 4
    assert len(select_entries(entries, level=None, since=None, limit=100)) == 5


def test_since_and_limit_cut_the_newest_entries() -> None:
    entries = parse_log_lines(LINES)
    since = datetime(2026, 11, 23, 10, 0, 2, tzinfo=UTC)
    assert [e["level"] for e in select_entries(entries, level=None, since=since, limit=100)] == [
        "CRITICAL",
        "ERROR",
        "WARNING",
    ]
    [newest] = select_entries(entries, level=None, since=None, limit=1)
    assert newest["message"] == "giving up"


def test_lines_without_a_timestamp_are_left_out() -> None:
    entries = parse_log_lines(["ray's own warning line", *LINES[1:2]])
    assert [e["message"] for e in select_entries(entries, level=None, since=None, limit=10)] == [
        "router started: 0 pending task(s), 1 agent(s)"
    ]


def test_an_unknown_level_is_refused() -> None:
    assert level_threshold("Warning") == level_threshold("warn") == 30
    with pytest.raises(ValueError, match="unknown level"):
        level_threshold("loud")


@pytest.mark.parametrize(
    ("name", "namespace", "kind"),
    [
        ("agent:0192", "orchestrator", "agent"),
        ("run:0193", "orchestrator", "run"),
        ("run-pool:1", "orchestrator", "run-pool"),
        ("runs", "orchestrator", "run-pool"),
        ("approval:9", "orchestrator", "approval"),
        ("router", "orchestrator", "router"),
        ("event-hub", "orchestrator", "event-hub"),
        ("SERVE_REPLICA::orchestrator#Api#abc", "serve", "api"),
        ("SERVE_CONTROLLER_ACTOR", "serve", "serve-controller"),
        ("SERVE_PROXY_ACTOR-node1", "serve", "serve-proxy"),
        ("router", "someone-else", None),
        (None, "orchestrator", None),
    ],
)
def test_actors_are_told_apart_by_name(name, namespace, kind) -> None:
    assert actor_kind(name, namespace, "orchestrator") == kind


def test_the_request_window_forgets_what_is_older_than_a_minute() -> None:
    now = [1000.0]
    stats = RequestStats(window_s=60, clock=lambda: now[0])
    stats.record("GET /api/v1/tasks", 200, 10.0)
    stats.record("GET /api/v1/tasks", 500, 30.0)
    now[0] += 30
    stats.record("POST /api/v1/tasks", 201, 20.0)

    snapshot = stats.snapshot()
    assert snapshot["scope"] == "replica" and snapshot["requests"] == 3 and snapshot["server_errors"] == 1
    assert snapshot["rate_per_s"] == 0.1  # 3 requests over the 30 s observed so far
    assert snapshot["latency_ms"] == {"p50": 20.0, "p95": 30.0, "max": 30.0}
    assert snapshot["routes"][0] == {
        "route": "GET /api/v1/tasks",
        "requests": 2,
        "server_errors": 1,
        "mean_ms": 20.0,
        "max_ms": 30.0,
    }

    now[0] += 45  # the first two are now 75 s old
    snapshot = stats.snapshot()
    assert snapshot["requests"] == 1 and [r["route"] for r in snapshot["routes"]] == ["POST /api/v1/tasks"]
    assert snapshot["latency_ms"]["p95"] == 20.0


def test_spans_are_written_as_json_lines_with_their_parent(tmp_path) -> None:
    path = tmp_path / "traces.jsonl"
    provider = telemetry_setup.install(
        telemetry_setup.JsonLinesSpanExporter(path), service="orchestrator-test", batch=False
    )
    try:
        token = correlation_id_var.set("cid-9")
        with provider.get_tracer("test").start_as_current_span("outer"):
            carrier = tracing.carrier()
        correlation_id_var.reset(token)
        with tracing.continued(carrier, "inner", {"orchestrator.task_id": "t1"}):
            pass
    finally:
        telemetry_setup.reset()
    outer, inner = (json.loads(line) for line in path.read_text().splitlines())
    assert inner["name"] == "inner" and outer["name"] == "outer"
    assert inner["trace_id"] == outer["trace_id"] and inner["parent_id"] == outer["span_id"]
    assert outer["parent_id"] is None and inner["kind"] == "CONSUMER"
    assert inner["service"] == "orchestrator-test" and inner["attributes"]["orchestrator.task_id"] == "t1"
    assert inner["attributes"]["orchestrator.correlation_id"] == "cid-9" and inner["end"] >= inner["start"]


def _record_every_metric() -> None:
    metrics.set_queue_depth({"P0": 1})
    metrics.count_tasks_routed({"assigned": 2, "stale": 0})
    metrics.observe_step_latency(12.5, "completed")
    metrics.record_webhook_deliveries({"delivered": 3})
    metrics.set_platform_state({"running": 1}, 2, every_status=ExecutionStatus)


def test_metrics_do_nothing_until_a_backend_is_installed(monkeypatch) -> None:
    # Whatever this test session did before (a router built in process installs the Ray backend).
    monkeypatch.setattr(metrics, "_created", {})
    monkeypatch.setattr(metrics, "_backend", None)
    _record_every_metric()
    assert metrics._created == {}
    assert all(name.startswith("orchestrator_") for name in metrics.DEFINITIONS)


def test_the_ray_backend_records_nothing_outside_ray(monkeypatch) -> None:
    monkeypatch.setattr(metrics, "_created", {})
    monkeypatch.setattr(metrics, "_backend", None)
    monkeypatch.setattr(actor_metrics.ray, "is_initialized", lambda: False)
    actor_metrics.install_ray_metrics()
    _record_every_metric()
    assert metrics._created == {}


def test_every_metric_is_recorded_through_the_installed_backend(monkeypatch) -> None:
    recorded: list[tuple[str, str, object, dict]] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def set(self, value, tags=None) -> None:
            recorded.append((self.name, "set", value, tags or {}))

        def inc(self, value, tags=None) -> None:
            recorded.append((self.name, "inc", value, tags or {}))

        def observe(self, value, tags=None) -> None:
            recorded.append((self.name, "observe", value, tags or {}))

    class Backend:
        def create(self, name, kind, description, tag_keys):
            assert (kind, description, tag_keys) == metrics.DEFINITIONS[name]
            return Recorder(name)

    monkeypatch.setattr(metrics, "_created", {})
    monkeypatch.setattr(metrics, "_backend", Backend())
    _record_every_metric()
    assert ("orchestrator_queue_depth", "set", 0, {"priority": "P3"}) in recorded
    assert ("orchestrator_tasks_routed", "inc", 2, {"outcome": "assigned"}) in recorded
    assert not any(
        name == "orchestrator_tasks_routed" and tags == {"outcome": "stale"} for name, _, _, tags in recorded
    )
    assert ("orchestrator_step_latency_ms", "observe", 12.5, {"status": "completed"}) in recorded
    assert ("orchestrator_webhook_deliveries", "inc", 3, {"outcome": "delivered"}) in recorded
    assert ("orchestrator_runs", "set", 0, {"status": "failed"}) in recorded
    assert ("orchestrator_approvals_pending", "set", 2, {}) in recorded


def test_the_telemetry_api_in_core_loads_no_sdk_and_no_ray() -> None:
    # Every layer imports core.tracing and core.metrics; only a process's start-up sets up the SDK.
    probe = (
        "import sys, core.context, core.metrics, core.tracing; print(sorted(name for name in sys.modules "
        "if name == 'ray' or name.startswith(('ray.', 'opentelemetry.sdk', 'opentelemetry.exporter'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]"
