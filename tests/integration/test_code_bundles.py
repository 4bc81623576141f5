"""Python-defined workflows on each real database, the run driven in-process: code shipped as a bundle
(stored as sent, never unpickled by the API), a step that is a function defined in `__main__` using a
module-level name, only allowed roles may ship code, a run of shipped code asks for a process of its own,
and another owner's run cannot load it."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient
from orchestrator_sdk import Workflow

from runtime.engine import execute
from schedulers.admission import ISOLATED
from serve_app.app import create_app
from services.executions import DatabaseRunStore, resources_of
from tests.conftest import make_settings
from tests.integration.test_agents import _user
from tests.integration.test_auth_flow import assert_error

NOTEBOOK_CELL = """
FACTOR = 3

def triple(state):
    return {"value": state["value"] * FACTOR}

def square(item):
    return item * item
"""


def _notebook_functions() -> dict:
    """Functions as a notebook defines them: in `__main__`, not importable anywhere else."""
    namespace = {"__name__": "__main__"}
    exec(compile(NOTEBOOK_CELL, "<notebook cell>", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.fixture
def client(tmp_path, db, database_url):
    with TestClient(create_app(make_settings(tmp_path, database_url)), raise_server_exceptions=False) as test_client:
        yield test_client


def _ship(client: TestClient, headers: dict, workflow: Workflow) -> str:
    data, sha256, names = workflow.bundle()
    stored = client.put(
        f"/api/v1/code-bundles/{sha256}",
        headers={**headers, "Content-Type": "application/octet-stream"},
        params={"python": workflow.python(), "functions": ",".join(names)},
        content=data,
    )
    assert stored.status_code in (200, 201), stored.text
    return sha256


def _start(client: TestClient, headers: dict, workflow: Workflow, sha256: str, value: int) -> str:
    agent = client.post("/api/v1/agents", headers=headers, json={"name": "notebook"}).json()
    created = client.post(
        f"/api/v1/agents/{agent['id']}/workflows",
        headers=headers,
        json={"name": workflow.name, "workflow_data": workflow.graph(sha256)},
    )
    assert created.status_code == 201, created.text
    started = client.post(
        f"/api/v1/workflows/{created.json()['id']}/execute",
        headers=headers,
        json={"input_data": {"value": value, "numbers": [1, 2, 3]}},
    )
    assert started.status_code == 201, started.text
    return started.json()["execution_id"]


def _drive(client: TestClient, db, execution_id: str, *, own_process: bool) -> dict:
    from actors.run import environment

    settings = client.app.state.context.settings
    store = DatabaseRunStore(db, settings, load_code=own_process)
    execute(store, execution_id, "test#1", environment(settings, None))
    return store, execution_id


def test_a_notebook_function_runs_as_a_step_and_its_code_is_shipped_once(client, db) -> None:
    admin = _user(client, "root")  # the first account: the platform admin, who may ship code by default
    cell = _notebook_functions()
    workflow = (
        Workflow("triple").step(cell["triple"]).map(cell["square"], items="{{ state.numbers }}", output_key="squares")
    )
    data, sha256, names = workflow.bundle()
    assert names == ["square", "triple"] and workflow.bundle()[1] == sha256  # the same code, the same bundle
    url = f"/api/v1/code-bundles/{sha256}"
    assert_error(client.get(url, headers=admin), 404, "NOT_FOUND")
    first = client.put(
        url,
        headers={**admin, "Content-Type": "application/octet-stream"},
        params={"python": workflow.python(), "functions": "square,triple"},
        content=data,
    )
    assert first.status_code == 201, first.text
    again = client.put(
        url,
        headers={**admin, "Content-Type": "application/octet-stream"},
        params={"python": workflow.python()},
        content=data,
    )
    assert again.status_code == 200 and again.json()["functions"] == ["square", "triple"]
    assert client.get(url, headers=admin).json()["size"] == len(data)

    run_id = _start(client, admin, workflow, sha256, 14)
    detail = client.get(f"/api/v1/executions/{run_id}", headers=admin).json()
    with db.session() as session:
        from persistence.models import Execution

        options = session.get(Execution, run_id).options
    assert options.get("isolated") is True and ISOLATED in resources_of(options, None)  # a process of its own
    _drive(client, db, run_id, own_process=True)
    detail = client.get(f"/api/v1/executions/{run_id}", headers=admin).json()
    assert detail["status"] == "completed", detail["error"]
    assert detail["output"]["value"] == 42 and detail["output"]["squares"] == [1, 4, 9]
    assert [step["node_id"] for step in detail["steps"]] == ["input", "triple", "square", "output"]


def test_a_pooled_process_never_loads_shipped_code_nor_another_owners_run(client, db) -> None:
    admin = _user(client, "root")
    workflow = Workflow("triple").step(_notebook_functions()["triple"])
    sha256 = _ship(client, admin, workflow)
    pooled = _start(client, admin, workflow, sha256, 1)
    _drive(client, db, pooled, own_process=False)
    run = client.get(f"/api/v1/executions/{pooled}", headers=admin).json()
    assert run["status"] == "failed" and "does not load shipped code" in run["error"]

    mallory = _user(client, "mallory")  # may not ship code, and may not use the admin's
    stolen = _start(client, mallory, workflow, sha256, 1)
    _drive(client, db, stolen, own_process=True)
    run = client.get(f"/api/v1/executions/{stolen}", headers=mallory).json()
    assert run["status"] == "failed" and "not this run's owner's" in run["error"]


def test_only_allowed_roles_may_ship_code_and_bundles_are_checked(client, db) -> None:
    _user(client, "root")
    agent_role = _user(client, "ada")  # self-registered: role agent
    data = b"not even a pickle"
    sha256 = hashlib.sha256(data).hexdigest()
    headers = {**agent_role, "Content-Type": "application/octet-stream"}
    refused = client.put(f"/api/v1/code-bundles/{sha256}", headers=headers, params={"python": "3.11"}, content=data)
    error = assert_error(refused, 403, "AUTHORIZATION_ERROR")
    assert "ORCHESTRATOR_CODE_SUBMISSION_ROLES" in error["message"]
    admin = {**_user(client, "admin2"), "Content-Type": "application/octet-stream"}  # also role agent
    assert (
        client.put(f"/api/v1/code-bundles/{sha256}", headers=admin, params={"python": "3.11"}, content=data).status_code
        == 403
    )


def test_bundles_must_match_their_hash(tmp_path, db, database_url) -> None:
    settings = make_settings(tmp_path, database_url, workflows={"code_submission_roles": "admin,agent"})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        _user(client, "root")
        ada = {**_user(client, "ada"), "Content-Type": "application/octet-stream"}
        data = b"bytes"
        wrong = client.put(f"/api/v1/code-bundles/{'0' * 64}", headers=ada, params={"python": "3.11"}, content=data)
        assert_error(wrong, 422, "VALIDATION_ERROR")
        bad_id = client.put("/api/v1/code-bundles/xyz", headers=ada, params={"python": "3.11"}, content=data)
        assert_error(bad_id, 422, "VALIDATION_ERROR")
        sha256 = hashlib.sha256(data).hexdigest()
        ok = client.put(f"/api/v1/code-bundles/{sha256}", headers=ada, params={"python": "3.11"}, content=data)
        assert ok.status_code == 201, ok.text  # an allowed role; the bytes are stored, never unpickled here
