"""Seed 004 on each real database, the pipeline's run driven in-process (tests/e2e/test_requirements.py
runs it on the actors): a requirement through four role agents (one rejection) to a file in the project's
workspace, the file run in the sandbox with its output streamed, reset into an archive and restored;
settings encrypted at rest and masked; paths confined; another tenant sees nothing."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from persistence.models import Event, OwnerSettings
from runtime.engine import execute
from services.executions import DatabaseRunStore
from tests.fixtures.scripted_llm import ScriptedLLM, serve
from tests.integration import test_workflows as flows
from tests.integration.test_agents import _user
from tests.integration.test_auth_flow import assert_error, bearer, login

KEY = "sk-test-0123456789abcdef"


# The workflow tests' fixtures: an app whose nodes may reach 127.0.0.1 (the scripted LLM), and its first two
# accounts (the admin, then the owner).
settings, client, owner = flows.settings, flows.client, flows.owner


@pytest.fixture
def llm():
    scripted = ScriptedLLM()
    with serve(scripted) as url:
        scripted.url = url
        yield scripted


def _drive(client: TestClient, db, execution_id: str) -> None:
    from actors.run import environment

    settings = client.app.state.context.settings  # with its secrets resolved, as the actors get them
    execute(DatabaseRunStore(db, settings), execution_id, "test#1", environment(settings, None))


def _configure(client: TestClient, headers: dict, llm: ScriptedLLM) -> dict:
    saved = client.post(
        "/api/v1/settings",
        headers=headers,
        json={"openai_base_url": llm.url, "llm_model": "tiny", "openai_api_key": KEY, "default_priority": 7},
    )
    assert saved.status_code == 200, saved.text
    return saved.json()


def _submit(client: TestClient, headers: dict, **body) -> dict:
    response = client.post(
        "/api/v1/requirements",
        headers=headers,
        json={"requirement": "I want a program that prints Hello World", "priority": 5, **body},
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_a_requirement_goes_through_four_roles_to_a_file_that_runs(client, settings, db, owner, llm) -> None:
    _configure(client, owner, llm)
    accepted = _submit(client, owner)
    assert accepted["status"] == "created" and accepted["estimated_completion"]
    assert accepted["agents_assigned"] == [
        "builtin-analyst",
        "builtin-implementer",
        "builtin-validator",
        "builtin-integrator",
    ]

    _drive(client, db, accepted["execution_id"])

    task = client.get(f"/api/v1/tasks/{accepted['task_id']}", headers=owner).json()
    assert task["status"] == "completed" and task["stage"] == "completed" and task["type"] == "requirement"
    assert task["priority"] == "P2"  # 5 on the 1-10 scale
    unprioritized = client.post("/api/v1/requirements", headers=owner, json={"requirement": "Another"}).json()
    # the settings' default_priority (7 here) applies
    assert client.get(f"/api/v1/tasks/{unprioritized['task_id']}", headers=owner).json()["priority"] == "P1"
    assert task["agents"]["validator"] == "builtin-validator"
    assert set(task["results"]) == {"analysis", "implementation", "validation", "integration"}
    assert task["results"]["validation"].startswith("APPROVED")
    # The validator's rejection sent the work back once; the caller's provider settings were used.
    assert (llm.count("implementer"), llm.count("validator"), llm.count("integrator")) == (2, 2, 1)
    assert all(body["model"] == "tiny" for _, body in llm.asked)
    rejected_retry = next(body for role, body in reversed(llm.asked) if role == "implementer")
    assert "it must print exactly Hello World" in rejected_retry["messages"][-1]["content"]
    with db.session() as session:
        rows = session.scalars(
            select(Event.data)
            .where(Event.event_type == "task.updated", Event.subject_id == task["id"])
            .order_by(Event.created_at, Event.id)
        ).all()
    stages = [row for row in rows if "stage" in row]
    assert [u["stage"] for u in stages][:2] == ["implementation", "validation"] and stages[-1]["progress"] > 50

    project = accepted["project_id"]
    listing = client.get(f"/api/v1/projects/{project}/workspace/files", headers=owner).json()["files"]
    assert [(f["path"], f["runnable"], f["metadata"]["command"]) for f in listing] == [
        ("implementation/hello_world.py", True, "python implementation/hello_world.py")
    ]
    content = client.get(f"/api/v1/projects/{project}/workspace/files/implementation/hello_world.py", headers=owner)
    assert content.status_code == 200 and content.text == "print('Hello World')\n"
    assert content.headers["content-type"].startswith("text/plain")

    started = client.post(f"/api/v1/projects/{project}/workspace/run/implementation/hello_world.py", headers=owner)
    assert started.status_code == 201, started.text
    run = started.json()
    assert run["output_stream"].endswith(f"/ws/execution/{run['execution_id']}") and run["status"] == "pending"
    _drive(client, db, run["execution_id"])
    detail = client.get(f"/api/v1/executions/{run['execution_id']}", headers=owner).json()
    assert detail["status"] == "completed", detail["error"]
    outcome = detail["output"]["run"]
    assert outcome["exit_code"] == 0 and outcome["status"] == "completed" and outcome["duration_ms"] >= 0
    assert outcome["tier"] in ("bubblewrap", "namespaces", "rlimits")
    stream = client.get(f"/api/v1/executions/{run['execution_id']}/stream", headers=owner).text
    printed = [
        json.loads(block.split("data: ", 1)[1])
        for block in stream.split("\n\n")
        if block.startswith("id:") and "event: execution_output" in block
    ]
    assert "".join(p["output"] for p in printed) == "Hello World\n"


def test_reset_archives_the_workspace_and_a_file_is_restored(client, settings, db, owner, llm) -> None:
    _configure(client, owner, llm)
    accepted = _submit(client, owner)
    _drive(client, db, accepted["execution_id"])
    project = accepted["project_id"]

    reset = client.post(f"/api/v1/projects/{project}/reset", headers=owner)
    assert reset.status_code == 200, reset.text
    body = reset.json()
    assert body["status"] == "success" and body["files_archived"] == 1 and body["workspace_cleared"] is True
    assert body["archive_path"] == f"archives/{body['archive_name']}"
    assert client.get(f"/api/v1/projects/{project}/workspace/files", headers=owner).json() == {"files": []}

    archives = client.get(f"/api/v1/projects/{project}/archives", headers=owner).json()["archives"]
    assert [(a["name"], a["files"]) for a in archives] == [(body["archive_name"], 1)]
    manifest = client.get(f"/api/v1/projects/{project}/archives/{body['archive_name']}/files", headers=owner).json()
    assert [f["path"] for f in manifest["files"]] == ["implementation/hello_world.py"]
    assert len(manifest["files"][0]["sha256"]) == 64
    assert manifest["requirements"][0]["task_id"] == accepted["task_id"]

    restored = client.post(
        f"/api/v1/projects/{project}/archives/{body['archive_name']}/restore/implementation/hello_world.py",
        headers=owner,
    )
    assert restored.status_code == 200, restored.text
    content = client.get(f"/api/v1/projects/{project}/workspace/files/implementation/hello_world.py", headers=owner)
    assert content.text == "print('Hello World')\n"
    missing = client.post(
        f"/api/v1/projects/{project}/archives/{body['archive_name']}/restore/nothing.py", headers=owner
    )
    assert_error(missing, 404, "NOT_FOUND")
    bad_name = client.get(f"/api/v1/projects/{project}/archives/..%2F..%2Fsecrets/files", headers=owner)
    assert bad_name.status_code in (404, 422)


def test_settings_are_encrypted_at_rest_and_returned_masked(client, db, owner, llm) -> None:
    shown = _configure(client, owner, llm)
    assert shown["openai_api_key"] == "sk-…cdef" and shown["anthropic_api_key"] is None
    assert shown["default_priority"] == 7 and shown["auto_save"] is True
    assert client.get("/api/v1/settings", headers=owner).json()["openai_api_key"] == "sk-…cdef"
    with db.session() as session:
        row = session.scalars(select(OwnerSettings)).one()
    stored = json.dumps({"values": row.values, "secrets": row.secrets})
    assert KEY not in stored and row.secrets["openai_api_key"]["ciphertext"]
    cleared = client.post("/api/v1/settings", headers=owner, json={"openai_api_key": ""}).json()
    assert cleared["openai_api_key"] is None and cleared["openai_base_url"] == llm.url
    bad = client.post(
        "/api/v1/settings", headers=owner, json={"openai_base_url": "file:///etc", "default_priority": 11}
    )
    assert_error(bad, 422, "VALIDATION_ERROR")


def test_a_setting_set_to_null_is_back_to_its_default(client, owner) -> None:
    # Found by the OpenAPI fuzzing: a stored null made every later read of the settings a 500.
    client.post("/api/v1/settings", headers=owner, json={"default_priority": 7, "auto_save": False})
    reset = client.post("/api/v1/settings", headers=owner, json={"default_priority": None, "auto_save": None})
    assert reset.status_code == 200, reset.text
    assert reset.json()["default_priority"] == 5 and reset.json()["auto_save"] is True
    assert client.get("/api/v1/settings", headers=owner).json()["default_priority"] == 5


def test_workspace_paths_are_confined(client, settings, owner, llm) -> None:
    from services.workspaces import Workspace

    project = client.post("/api/v1/projects", headers=owner, json={"name": "P"}).json()["id"]
    workspace = Workspace.of(settings, project)
    workspace.write("ok.py", "print(1)\n")
    outside = settings.data_dir / "outside.txt"
    outside.write_text("secret")
    (workspace.files / "link.txt").symlink_to(outside)
    for path in ("../outside.txt", "/etc/passwd", "a/../../x", "link.txt"):
        with pytest.raises(Exception) as refused:
            workspace.read(path)
        assert getattr(refused.value, "code", None) == "WORKSPACE_ERROR", path
    response = client.get(f"/api/v1/projects/{project}/workspace/files/link.txt", headers=owner)
    assert_error(response, 422, "WORKSPACE_ERROR")
    assert [
        f["path"] for f in client.get(f"/api/v1/projects/{project}/workspace/files", headers=owner).json()["files"]
    ] == ["ok.py"]
    too_big = "x" * (settings.workspaces.workspace_max_file_bytes + 1)
    with pytest.raises(Exception, match="larger than"):
        workspace.write("big.txt", too_big)
    not_runnable = client.post(f"/api/v1/projects/{project}/workspace/run/ok.txt", headers=owner)
    assert_error(not_runnable, 404, "NOT_FOUND")


def test_another_tenant_sees_no_workspace_archive_or_settings(client, settings, db, owner, llm) -> None:
    _configure(client, owner, llm)
    accepted = _submit(client, owner)
    _drive(client, db, accepted["execution_id"])
    project = accepted["project_id"]
    mallory = _user(client, "mallory")
    for method, path in (
        ("get", f"/api/v1/projects/{project}/workspace/files"),
        ("get", f"/api/v1/projects/{project}/workspace/files/implementation/hello_world.py"),
        ("post", f"/api/v1/projects/{project}/workspace/run/implementation/hello_world.py"),
        ("post", f"/api/v1/projects/{project}/reset"),
        ("get", f"/api/v1/projects/{project}/archives"),
        ("get", f"/api/v1/tasks/{accepted['task_id']}"),
        ("get", f"/api/v1/executions/{accepted['execution_id']}"),
    ):
        assert_error(getattr(client, method)(path, headers=mallory), 404, "NOT_FOUND")
    assert client.get("/api/v1/settings", headers=mallory).json()["openai_api_key"] is None


def test_an_approval_between_stages_holds_the_pipeline(client, settings, db, owner, llm) -> None:
    _configure(client, owner, llm)
    accepted = _submit(client, owner, metadata={"approve_after": ["analysis"]})
    _drive(client, db, accepted["execution_id"])
    assert client.get(f"/api/v1/executions/{accepted['execution_id']}", headers=owner).json()["status"] == "waiting"
    assert llm.count("implementer") == 0
    root = bearer(login(client, "root@example.com")["access_token"])  # an admin, not the requester
    pending = client.get("/api/v1/approvals/pending", headers=root).json()
    [approval] = pending["approvals"]  # the only one on this platform
    decided = client.post(f"/api/v1/approvals/{approval['id']}/approve", headers=root)
    assert decided.status_code == 200, decided.text
    _drive(client, db, accepted["execution_id"])
    assert client.get(f"/api/v1/executions/{accepted['execution_id']}", headers=owner).json()["status"] == "completed"
    assert llm.count("implementer") == 2
    bad = client.post(
        "/api/v1/requirements", headers=owner, json={"requirement": "x", "metadata": {"approve_after": ["nope"]}}
    )
    assert_error(bad, 422, "VALIDATION_ERROR")


def test_a_caller_cannot_point_a_run_at_another_projects_workspace(client, db, owner, llm) -> None:
    _configure(client, owner, llm)
    accepted = _submit(client, owner)
    _drive(client, db, accepted["execution_id"])
    mallory = _user(client, "mallory")
    agent = client.post("/api/v1/agents", headers=mallory, json={"name": "M"}).json()
    graph = {
        "nodes": [{"id": "run", "type": "sandbox", "config": {"path": "implementation/hello_world.py"}}],
        "edges": [],
    }
    workflow = client.post(
        f"/api/v1/agents/{agent['id']}/workflows", headers=mallory, json={"name": "W", "workflow_data": graph}
    ).json()
    stolen = {"platform": {"project_id": accepted["project_id"], "provider": "owner_settings"}}
    started = client.post(
        f"/api/v1/workflows/{workflow['id']}/execute", headers=mallory, json={"input_data": {}, "configuration": stolen}
    )
    if started.status_code == 422:  # the execute body has no configuration: nothing to steal through it
        started = client.post(
            "/api/v1/executions", headers=mallory, json={"agent_id": agent["id"], "input": {}, "configuration": stolen}
        )
    assert started.status_code == 201, started.text
    _drive(client, db, started.json()["execution_id"])
    run = client.get(f"/api/v1/executions/{started.json()['execution_id']}", headers=mallory).json()
    assert run["status"] == "failed" and "no project workspace" in run["error"]
    assert "platform" not in (run.get("configuration") or {})


def test_a_role_the_tenant_has_agents_of_is_handed_to_them_through_the_router(client, db, owner, llm) -> None:
    from persistence.models import Agent, Task

    _configure(client, owner, llm)
    agent = client.post("/api/v1/agents", headers=owner, json={"name": "Ana", "type": "analyst"}).json()
    with db.transaction() as session:  # deployed (its actor is the e2e suite's business)
        session.get(Agent, agent["id"]).status = "active"
    accepted = _submit(client, owner)
    assert accepted["agents"]["analyst"] == "Ana" and accepted["agents"]["implementer"] == "builtin-implementer"
    _drive(client, db, accepted["execution_id"])
    assert client.get(f"/api/v1/executions/{accepted['execution_id']}", headers=owner).json()["status"] == "waiting"
    with db.session() as session:
        [stage] = session.scalars(select(Task).where(Task.type == "requirement_analysis")).all()
        assert stage.payload["role"] == "analyst" and "Hello World" in stage.payload["prompt"]
    assigned = client.post(f"/api/v1/tasks/{stage.id}/assign", headers=owner, json={"agent_id": agent["id"]})
    assert assigned.status_code == 200, assigned.text
    client.patch(f"/api/v1/tasks/{stage.id}/status?status=in_progress", headers=owner)
    done = client.patch(
        f"/api/v1/tasks/{stage.id}/status",
        headers=owner,
        json={"status": "completed", "result": {"text": "Analysis by Ana: one file."}},
    )
    assert done.status_code == 200, done.text
    _drive(client, db, accepted["execution_id"])
    task = client.get(f"/api/v1/tasks/{accepted['task_id']}", headers=owner).json()
    assert task["status"] == "completed" and task["results"]["analysis"] == "Analysis by Ana: one file."
    assert llm.count("analyst") == 0 and llm.count("implementer") == 2


def test_a_running_workspace_file_is_stopped_by_cancelling_its_run(client, settings, db, owner) -> None:
    import threading
    import time

    import psutil

    from services.workspaces import Workspace

    project = client.post("/api/v1/projects", headers=owner, json={"name": "Server"}).json()["id"]
    Workspace.of(settings, project).write("server.py", "import time\nprint('serving', flush=True)\ntime.sleep(60)\n")
    started = client.post(f"/api/v1/projects/{project}/workspace/run/server.py", headers=owner).json()
    execution_id = started["execution_id"]
    runner = threading.Thread(target=_drive, args=(client, db, execution_id), daemon=True)
    runner.start()

    def serving() -> list:
        return [
            p for p in psutil.process_iter(["cmdline"]) if any("server.py" in part for part in p.info["cmdline"] or [])
        ]

    deadline = time.monotonic() + 20
    while not serving() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert serving(), "the file did not start"
    cancelled = client.delete(f"/api/v1/executions/{execution_id}", headers=owner)
    assert cancelled.status_code == 200, cancelled.text
    runner.join(timeout=30)
    assert not runner.is_alive()
    run = client.get(f"/api/v1/executions/{execution_id}", headers=owner).json()
    assert run["status"] == "cancelled"
    deadline = time.monotonic() + 10
    while serving() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not serving(), "the sandboxed process outlived its run"
