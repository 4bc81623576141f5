"""Workflows and runs on each real database, the engine run in-process (the Ray actors that host it are
tested in tests/e2e/test_workflow_runs.py): validation, versions, every node type, retries, waits,
cancel, timeouts, and resuming after a crash with each side effect applied once."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from persistence.models import Agent, Event
from runtime.engine import execute
from serve_app.app import create_app
from services import routing, tasks
from services.executions import DatabaseRunStore
from tests.conftest import make_settings
from tests.integration.test_agents import _agent, _user
from tests.integration.test_auth_flow import assert_error, bearer, login

FIX = "tests.fixtures.workflow_nodes"


@pytest.fixture
def settings(tmp_path, db, database_url):
    return make_settings(
        tmp_path,
        database_url,
        agents={"agent_code_modules": "tests.fixtures"},
        workflows={"http_allowed_hosts": "127.0.0.1"},
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def owner(client) -> dict:
    _user(client, "root")
    return _user(client, "alice")


def _workflow(client: TestClient, headers: dict, nodes: list, edges: list, settings: dict | None = None) -> dict:
    agent = _agent(client, headers)
    response = client.post(
        f"/api/v1/agents/{agent['id']}/workflows",
        headers=headers,
        json={"name": "Flow", "workflow_data": {"nodes": nodes, "edges": edges, "settings": settings or {}}},
    )
    assert response.status_code == 201, response.text
    return response.json()


def _chain(*nodes: dict) -> tuple[list, list]:
    return list(nodes), [{"source": a["id"], "target": b["id"]} for a, b in pairwise(nodes)]


def _run(client, settings, db, headers, workflow, body=None, *, token="test#1", takeover=None) -> dict:
    started = client.post(f"/api/v1/workflows/{workflow['id']}/execute", headers=headers, json=body or {})
    assert started.status_code == 201, started.text
    return _drive(client, settings, db, headers, started.json()["execution_id"], token=token, takeover=takeover)


def _drive(client, settings, db, headers, execution_id, *, token="test#1", takeover=None) -> dict:
    from actors.run import environment

    execute(DatabaseRunStore(db, settings), execution_id, token, environment(settings, None), takeover=takeover)
    return client.get(f"/api/v1/executions/{execution_id}", headers=headers).json()


def test_a_workflow_is_validated_with_every_problem_named(client, owner) -> None:
    agent = _agent(client, owner)
    bad = {
        "nodes": [
            {"id": "a", "type": "input"},
            {"id": "a", "type": "python"},
            {"id": "b", "type": "teleport"},
            {"id": "c", "type": "python", "config": {}},
            {"id": "d", "type": "condition", "config": {"expression": "__import__('os')"}},
        ],
        "edges": [{"source": "a", "target": "zz"}, {"source": "a", "target": "c", "condition": "state.x ** 2"}],
    }
    response = client.post(
        f"/api/v1/agents/{agent['id']}/workflows", headers=owner, json={"name": "Bad", "workflowData": bad}
    )
    fields = {d["field"] for d in assert_error(response, 422, "VALIDATION_ERROR")["details"]}
    assert {
        "workflow_data.nodes[1].id",
        "workflow_data.nodes[2].type",
        "workflow_data.nodes[3].config.function",
        "workflow_data.nodes[4].config.expression",
        "workflow_data.edges[0].target",
        "workflow_data.edges[1].condition",
    } <= fields
    cyclic = {
        "nodes": [
            {"id": "a", "type": "input"},
            {"id": "b", "type": "python", "config": {"function": f"{FIX}:add_one"}},
            {"id": "c", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        ],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}, {"source": "c", "target": "b"}],
    }
    refused = client.post(
        f"/api/v1/agents/{agent['id']}/workflows", headers=owner, json={"name": "Loop", "workflow_data": cyclic}
    )
    assert "cycle b -> c -> b" in assert_error(refused, 422, "VALIDATION_ERROR")["details"][0]["message"]
    cyclic["nodes"][1]["allow_loops"] = True
    allowed = client.post(
        f"/api/v1/agents/{agent['id']}/workflows", headers=owner, json={"name": "Loop", "workflow_data": cyclic}
    )
    assert allowed.status_code == 201


def test_updates_make_versions_and_a_run_keeps_the_version_it_started_with(client, settings, db, owner) -> None:
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output"},
    )
    workflow = _workflow(client, owner, nodes, edges)
    assert workflow["version"] == "1.0.0"
    started = client.post(
        f"/api/v1/workflows/{workflow['id']}/execute", headers=owner, json={"input_data": {"value": 1}}
    )
    doubled = {**workflow["workflow_data"]}
    doubled["nodes"] = [
        *nodes[:1],
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:double_later"}},
        nodes[2],
    ]
    updated = client.put(f"/api/v1/workflows/{workflow['id']}", headers=owner, json={"workflowData": doubled})
    assert updated.status_code == 200 and updated.json()["version"] == "1.1.0"
    versions = client.get(f"/api/v1/workflows/{workflow['id']}/versions", headers=owner).json()["versions"]
    assert [v["version"] for v in versions] == ["1.1.0", "1.0.0"]
    first = _drive(client, settings, db, owner, started.json()["execution_id"])
    assert first["status"] == "completed" and first["output"]["value"] == 2 and first["workflow_version"] == "1.0.0"
    second = _run(client, settings, db, owner, workflow, {"input_data": {"value": 5}})
    assert second["output"]["value"] == 10 and second["workflow_version"] == "1.1.0"
    assert [s["node_id"] for s in second["steps"]] == ["in", "add", "out"]
    assert (
        second["progress"] == 1.0 and second["resource_usage"]["execution_time"] >= 0 and second["duration"] is not None
    )
    listed = client.get(f"/api/v1/executions?workflowId={workflow['id']}&status=COMPLETED", headers=owner).json()
    assert listed["pagination"]["total"] == 2
    with db.session() as session:
        kinds = [
            e.event_type
            for e in session.scalars(
                select(Event).where(Event.subject_id == second["id"]).order_by(Event.created_at, Event.id)
            )
        ]
    assert kinds[0] == "execution.started" and kinds[-1] == "execution.completed"


def test_conditions_branch_and_templates_read_the_state(client, settings, db, owner) -> None:
    nodes = [
        {"id": "in", "type": "input", "config": {"required": ["amount"]}},
        {"id": "big", "type": "condition", "config": {"expression": "state.amount > 100"}},
        {"id": "approve", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output", "config": {"fields": ["value", "big"]}},
    ]
    edges = [
        {"source": "in", "target": "big"},
        {"source": "big", "target": "approve", "branch": "true"},
        {"source": "big", "target": "out", "branch": "false"},
        {"source": "approve", "target": "out"},
    ]
    workflow = _workflow(client, owner, nodes, edges)
    small = _run(client, settings, db, owner, workflow, {"input_data": {"amount": 5, "value": 0}})
    assert small["output"] == {"value": 0, "big": False}
    large = _run(client, settings, db, owner, workflow, {"input_data": {"amount": 500, "value": 0}})
    assert large["output"] == {"value": 1, "big": True}
    missing = _run(client, settings, db, owner, workflow, {"input_data": {}})
    assert missing["status"] == "failed" and "missing amount" in missing["error"]


def test_a_failing_node_is_retried_and_a_broken_one_fails_the_run(client, settings, db, owner) -> None:
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {
            "id": "flaky",
            "type": "python",
            "retry_count": 2,
            "retry_backoff_s": 0.01,
            "config": {"function": f"{FIX}:flaky"},
        },
        {"id": "out", "type": "output"},
    )
    run = _run(client, settings, db, owner, _workflow(client, owner, nodes, edges))
    assert run["status"] == "completed" and run["output"]["flaky_attempts"] == 2
    assert [(s["node_id"], s["attempt"], s["status"]) for s in run["steps"]][1:3] == [
        ("flaky", 1, "failed"),
        ("flaky", 2, "completed"),
    ]
    nodes, edges = _chain(
        {"id": "in", "type": "input"}, {"id": "bad", "type": "python", "config": {"function": f"{FIX}:broken"}}
    )
    failed = _run(client, settings, db, owner, _workflow(client, owner, nodes, edges))
    assert failed["status"] == "failed" and "always fails" in failed["error"]
    logs = client.get(f"/api/v1/executions/{failed['id']}/logs?level=error&limit=1", headers=owner).json()
    assert logs["logs"][0]["level"] == "ERROR" and logs["pagination"]["total"] >= 1


def test_a_run_killed_after_its_side_effect_resumes_without_applying_it_twice(
    client, settings, db, owner, tmp_path
) -> None:
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {"id": "effect", "type": "python", "config": {"function": f"{FIX}:effect"}},
        {"id": "again", "type": "python", "config": {"function": f"{FIX}:effect"}},
        {"id": "out", "type": "output"},
    )
    workflow = _workflow(client, owner, nodes, edges)
    effects = tmp_path / "effects"
    started = client.post(
        f"/api/v1/workflows/{workflow['id']}/execute", headers=owner, json={"input_data": {"effects_dir": str(effects)}}
    ).json()

    class Crash(BaseException):
        pass

    store = DatabaseRunStore(db, settings)
    original = store.checkpoint

    def crashing_checkpoint(run, token, step, **kwargs):  # the process dies after `effect` ran, before its record
        if step.node_id == "effect":
            raise Crash
        return original(run, token, step, **kwargs)

    store.checkpoint = crashing_checkpoint
    from actors.run import environment

    with pytest.raises(Crash):
        execute(store, started["execution_id"], "dead#1", environment(settings, None))
    store.checkpoint = original
    # A second actor cannot take the run while the dead one's lease holds, unless it takes over that lease.
    assert execute(store, started["execution_id"], "other#2", environment(settings, None)).status == "not_claimed"
    run = _drive(client, settings, db, owner, started["execution_id"], token="new#3", takeover="dead#1")
    assert run["status"] == "completed" and run["resumes"] == 1
    calls_made = (effects / "calls").read_text().split()
    assert len(calls_made) == 3  # the interrupted node ran twice …
    assert calls_made[0] == calls_made[1] == f"{run['id']}:effect:1"  # … with the same key
    assert sorted(p.name for p in effects.iterdir() if p.name != "calls") == sorted(
        {key.replace(":", "_") for key in calls_made}
    )  # … and its effect exists once
    assert [s["node_id"] for s in run["steps"]] == ["in", "effect", "again", "out"]


def test_an_approval_node_waits_and_resumes_on_the_decision(client, settings, db, owner) -> None:
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {"id": "gate", "type": "approval", "config": {"reason": "Ship {{ state.item }}?"}},
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output"},
    )
    workflow = _workflow(client, owner, nodes, edges)
    run = _run(client, settings, db, owner, workflow, {"input_data": {"item": "v2", "value": 1}})
    assert run["status"] == "waiting" and run["waiting_on"]["kind"] == "approval" and run["current_step"] == "gate"
    approval = client.get(f"/api/v1/approvals/{run['waiting_on']['id']}", headers=owner).json()
    assert approval["reason"] == "Ship v2?"
    assert_error(client.post(f"/api/v1/approvals/{approval['id']}/approve", headers=owner), 403, "AUTHORIZATION_ERROR")
    admin = bearer(login(client, "root@example.com")["access_token"])  # the platform admin decides
    assert client.post(f"/api/v1/approvals/{approval['id']}/approve", headers=admin).status_code == 200
    assert client.get(f"/api/v1/executions/{run['id']}", headers=owner).json()["status"] == "pending"
    done = _drive(client, settings, db, owner, run["id"], token="t#2")
    assert (
        done["status"] == "completed"
        and done["output"]["value"] == 2
        and done["output"]["gate"]["status"] == "approved"
    )

    rejected = _run(client, settings, db, owner, workflow, {"input_data": {"item": "v3", "value": 1}})
    client.post(f"/api/v1/approvals/{rejected['waiting_on']['id']}/reject?reason=not%20now", headers=admin)
    ended = _drive(client, settings, db, owner, rejected["id"], token="t#3")
    assert ended["status"] == "failed" and "not now" in ended["error"]


def test_tokens_used_before_a_wait_still_count_after_the_run_resumes(client, settings, db, owner, fake_llm) -> None:
    ask = {"base_url": fake_llm, "model": "tiny", "prompt": "Hi", "stream": False}
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {"id": "before", "type": "llm", "config": {**ask, "output_key": "first"}},
        {"id": "gate", "type": "approval", "config": {"reason": "Go on?"}},
        {"id": "after", "type": "llm", "config": {**ask, "output_key": "second"}},
        {"id": "out", "type": "output"},
    )
    run = _run(client, settings, db, owner, _workflow(client, owner, nodes, edges))
    assert run["status"] == "waiting" and run["tokens_used"] == 16
    admin = bearer(login(client, "root@example.com")["access_token"])
    assert client.post(f"/api/v1/approvals/{run['waiting_on']['id']}/approve", headers=admin).status_code == 200
    done = _drive(client, settings, db, owner, run["id"], token="t#2")
    assert done["status"] == "completed" and done["tokens_used"] == 32, (done["status"], done["error"])


def test_a_task_node_waits_for_the_task(client, settings, db, owner) -> None:
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {"id": "work", "type": "task", "config": {"type": "bugfix", "payload": {"ticket": "{{ state.ticket }}"}}},
        {"id": "out", "type": "output"},
    )
    run = _run(client, settings, db, owner, _workflow(client, owner, nodes, edges), {"input_data": {"ticket": 42}})
    assert run["status"] == "waiting"
    task = client.get(f"/api/v1/tasks/{run['waiting_on']['id']}", headers=owner).json()
    assert task["payload"] == {"ticket": 42} and task["type"] == "bugfix"
    client.patch(f"/api/v1/tasks/{task['id']}", headers=owner, json={"status": "cancelled"})
    ended = _drive(client, settings, db, owner, run["id"], token="t#2")
    assert ended["status"] == "failed" and "cancelled" in ended["error"]


def test_a_task_node_adds_the_tokens_its_framework_agent_used_to_the_runs(client, settings, db, owner) -> None:
    agent = _agent(client, owner, type="bugfix")
    with db.transaction() as session:
        session.execute(update(Agent).where(Agent.id == agent["id"]).values(status="active", container_id="actor-1"))
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {"id": "work", "type": "task", "config": {"type": "bugfix"}},
        {"id": "out", "type": "output"},
    )
    run = _run(client, settings, db, owner, _workflow(client, owner, nodes, edges), {"input_data": {}})
    task_id = run["waiting_on"]["id"]
    usage = {"input_tokens": 300, "output_tokens": 200, "total_tokens": 500}
    with db.transaction() as session:
        routing.assign_routed(session, task_id, agent["id"], settings)
    with db.transaction() as session:
        assert tasks.start_for_agent(session, task_id, agent["id"]) is not None
        assert tasks.finish_for_agent(session, task_id, agent["id"], {"output": "fixed", "usage": usage}, None, 0.1)
    ended = _drive(client, settings, db, owner, run["id"], token="t#2")
    assert ended["status"] == "completed" and ended["tokens_used"] == 500 and ended["cost"] == 0.05


def test_cancel_and_timeouts(client, settings, db, owner) -> None:
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {"id": "nap", "type": "python", "config": {"function": f"{FIX}:sleep"}},
        {"id": "out", "type": "output"},
    )
    workflow = _workflow(client, owner, nodes, edges)
    pending = client.post(f"/api/v1/workflows/{workflow['id']}/execute", headers=owner, json={}).json()
    cancelled = client.post(f"/api/v1/executions/{pending['execution_id']}/cancel", headers=owner)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert_error(client.delete(f"/api/v1/executions/{pending['execution_id']}", headers=owner), 409, "CONFLICT")
    timed = _run(
        client, settings, db, owner, workflow, {"input_data": {"seconds": 3}, "execution_options": {"timeout": 300}}
    )
    assert timed["status"] == "timeout" and "timed out" in timed["error"]
    node_limit = _workflow(
        client,
        owner,
        *_chain(
            {"id": "in", "type": "input"},
            {"id": "nap", "type": "python", "timeout_s": 0.2, "config": {"function": f"{FIX}:sleep"}},
        ),
    )
    slow = _run(client, settings, db, owner, node_limit, {"input_data": {"seconds": 2}})
    assert slow["status"] == "failed" and "timed out after 0.2s" in slow["error"]


class _FakeLLM(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        words = ["Hello", " from", " the", " model"]
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for word in words:
                self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {'content': word}}]})}\n\n".encode())
            usage = {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
            self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
            return
        payload = json.dumps({"choices": [{"message": {"content": "".join(words)}}], "usage": {"total_tokens": 16}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_llm():
    _FakeLLM.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeLLM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_llm_http_and_map_nodes(client, settings, db, owner, fake_llm) -> None:
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {
            "id": "ask",
            "type": "llm",
            "config": {
                "base_url": fake_llm,
                "model": "tiny",
                "prompt": "Say hi to {{ state.name }}",
                "output_key": "answer",
            },
        },
        {
            "id": "call",
            "type": "http",
            "config": {
                "url": f"{fake_llm}/chat/completions",
                "method": "POST",
                "json": {"model": "tiny", "messages": []},
            },
        },
        {
            "id": "squares",
            "type": "map",
            "config": {"items": "{{ state.numbers }}", "function": f"{FIX}:square", "max_parallel": 2},
        },
        {"id": "out", "type": "output"},
    )
    run = _run(
        client,
        settings,
        db,
        owner,
        _workflow(client, owner, nodes, edges),
        {"input_data": {"name": "Ada", "numbers": [1, 2, 3]}},
    )
    assert run["status"] == "completed", run["error"]
    assert run["output"]["answer"] == "Hello from the model" and run["tokens_used"] == 16
    assert _FakeLLM.seen[0]["messages"][-1]["content"] == "Say hi to Ada" and _FakeLLM.seen[0]["stream"] is True
    assert run["output"]["call"]["status"] == 200 and run["output"]["squares"] == [1, 4, 9]
    with db.session() as session:
        query = select(Event).where(Event.event_type == "execution.output", Event.subject_id == run["id"])
        streamed = [event.data["text"] for event in session.scalars(query.order_by(Event.created_at, Event.id))]
    assert "".join(streamed) == "Hello from the model"


def test_http_nodes_refuse_private_addresses_unless_allowed(client, settings, db, owner, fake_llm) -> None:
    for url in (
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.2:9/",
        "http://[::1]:9/",
    ):
        nodes, edges = _chain({"id": "in", "type": "input"}, {"id": "call", "type": "http", "config": {"url": url}})
        run = _run(client, settings, db, owner, _workflow(client, owner, nodes, edges))
        assert run["status"] == "failed" and "private address" in run["error"], run["error"]


def test_another_tenant_sees_no_workflow_or_run(client, settings, db, owner) -> None:
    nodes, edges = _chain({"id": "in", "type": "input"}, {"id": "out", "type": "output"})
    workflow = _workflow(client, owner, nodes, edges)
    run = _run(client, settings, db, owner, workflow)
    eve = _user(client, "eve")
    for path in (
        f"/api/v1/workflows/{workflow['id']}",
        f"/api/v1/executions/{run['id']}",
        f"/api/v1/executions/{run['id']}/logs",
        f"/api/v1/workflows/{workflow['id']}/versions",
    ):
        assert_error(client.get(path, headers=eve), 404, "NOT_FOUND")
    assert_error(client.post(f"/api/v1/workflows/{workflow['id']}/execute", headers=eve, json={}), 404, "NOT_FOUND")
    assert client.get("/api/v1/executions", headers=eve).json()["executions"] == []


def test_the_stream_sends_steps_and_ends(client, settings, db, owner) -> None:
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output"},
    )
    run = _run(client, settings, db, owner, _workflow(client, owner, nodes, edges), {"input_data": {"value": 1}})
    with client.stream("GET", f"/api/v1/executions/{run['id']}/stream", headers=owner) as stream:
        text = "".join(stream.iter_text())
    events = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    assert events.count("step") == 3 and events[-1] == "end"
    with client.stream(
        "GET", f"/api/v1/executions/{run['id']}/stream", headers={**owner, "Last-Event-ID": "2:0"}
    ) as stream:
        resumed = "".join(stream.iter_text())
    assert resumed.count("event: step") == 1


def test_bad_execution_input_is_refused(client, owner) -> None:
    nodes, edges = _chain({"id": "in", "type": "input"}, {"id": "out", "type": "output"})
    workflow = _workflow(client, owner, nodes, edges)
    for body in (
        {"input_data": []},
        {"execution_options": {"timeout": -1}},
        {"execution_options": {"resources": {"cpu": -2}}},
    ):
        assert_error(
            client.post(f"/api/v1/workflows/{workflow['id']}/execute", headers=owner, json=body),
            422,
            "VALIDATION_ERROR",
        )
    assert_error(client.post("/api/v1/executions", headers=owner, json={"agentId": "nope"}), 404, "NOT_FOUND")
    assert_error(client.get("/api/v1/executions?status=sleeping", headers=owner), 422, "VALIDATION_ERROR")
