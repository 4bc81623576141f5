"""The dashboard on each real database: every figure computed from recorded rows, for the caller's tenant."""

from __future__ import annotations

from datetime import timedelta

from core.clock import utcnow
from persistence.models import Configuration, Execution
from tests.integration.test_agents import _agent, _user
from tests.integration.test_auth_flow import assert_error


def _runs(db, agent: dict, owner_id: str, spec: list[tuple[float, str, int]]) -> None:
    """Executions `hours_ago`, `status`, `duration_ms` for the agent, owned by `owner_id`."""
    now = utcnow()
    with db.transaction() as session:
        for hours_ago, status, duration in spec:
            created = now - timedelta(hours=hours_ago)
            session.add(Execution(workflow_version="1.0.0", agent_id=agent["id"], graph={}, status=status, input={},
                                  owner_type="user", owner_id=owner_id, created_at=created,
                                  started_at=created + timedelta(milliseconds=50), duration_ms=duration,
                                  tokens_used=10, cost=0.5))  # fmt: skip


def test_the_dashboard_counts_what_was_recorded(client, db) -> None:
    _user(client, "root")
    alice, bob = _user(client, "alice"), _user(client, "bob")
    alice_id = client.get("/api/v1/users/me", headers=alice).json()["id"]
    native = _agent(client, alice)
    graph = _agent(client, alice, framework="langgraph")
    _runs(db, native, alice_id, [(1, "completed", 100), (2, "failed", 300), (3, "completed", 200)])
    _runs(db, graph, alice_id, [(5, "completed", 400)])
    _runs(db, native, alice_id, [(30, "completed", 100), (40, "completed", 100)])  # the previous 24 h
    with db.transaction() as session:
        session.add(
            Configuration(name="cfg", framework="native", owner_type="user", owner_id=alice_id, configuration={})
        )

    body = client.get("/api/v1/dashboard/metrics?timeframe=24h", headers=alice).json()
    overview = body["overview"]
    assert overview["executions"] == {"value": 4, "previous": 2, "change": 100.0, "trend": "up"}
    assert overview["active_agents"]["value"] == 2 and overview["active_agents"]["previous"] == 1
    assert overview["frameworks"] == {"value": 2, "change": 2}  # both agents are new this period
    assert overview["saved_configs"] == {"value": 1, "change": 1}
    trends = body["charts"]["execution_trends"]
    assert sum(point["total"] for point in trends) == 4 and sum(point["failed"] for point in trends) == 1
    assert all(point["date"].endswith(":00:00Z") for point in trends)
    distribution = {item["framework"]: item for item in body["charts"]["framework_distribution"]}
    assert distribution["native"]["executions"] == 3 and distribution["langgraph"]["executions"] == 1
    performance = body["charts"]["performance"]
    assert performance["finished_executions"] == 4 and performance["success_rate"] == 0.75
    assert performance["average_duration_ms"] == 250.0 and performance["max_duration_ms"] == 400
    assert performance["tokens_used"] == 40 and abs(performance["average_start_latency_ms"] - 50.0) < 5
    assert len(body["recent_activity"]) == 6

    week = client.get("/api/v1/dashboard/metrics?timeframe=7d", headers=alice).json()
    assert week["overview"]["executions"]["value"] == 6 and week["overview"]["executions"]["previous"] == 0

    # Another tenant sees none of it.
    other = client.get("/api/v1/dashboard/metrics", headers=bob).json()
    assert other["overview"]["executions"]["value"] == 0 and other["recent_activity"] == []
    assert_error(client.get("/api/v1/dashboard/metrics?timeframe=1y", headers=alice), 422, "VALIDATION_ERROR")


def test_the_real_time_stream_sends_the_dashboard(client, db) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    with client.stream("GET", "/api/v1/dashboard/real-time", headers={**alice, "Last-Event-ID": "41"}) as stream:
        lines = []
        for line in stream.iter_lines():
            lines.append(line)
            if line.startswith("data:"):
                break
    assert lines[0] == "id: 42" and lines[1] == "event: metrics" and '"overview"' in lines[2]
