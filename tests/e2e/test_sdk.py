"""The Python SDK (`orchestrator_sdk`, sdk/) against the live platform: sync and async clients, the API
guide's Python example run as written, paging, a workflow run with `wait()`, and a run's stream that
drops mid-way and resumes from its last event id."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from orchestrator_sdk import AsyncClient, Client, Conflict, NotFound, OrchestratorClient, RunFailed

from tests.e2e.test_agent_actors import _eventually

FIX = "tests.fixtures.workflow_nodes"
PASSWORD = "correct horse 1"

# The API guide's Python example, character for character; the test replaces only its placeholders (the
# base URL, the API key and the project id, which the platform generates).
SEED_EXAMPLE = """
from orchestrator_sdk import OrchestratorClient
import asyncio

client = OrchestratorClient(
    base_url='http://localhost:3000',
    api_key='your-api-key'
)

async def create_and_monitor_task():
    # Create task
    task = await client.tasks.create({
        'title': 'Build user registration',
        'description': 'Implement user registration with email verification',
        'priority': 'high',
        'project_id': 'proj-123'
    })
    
    print(f'Task created: {task["id"]}')
    
    # Monitor progress
    async for update in client.tasks.watch(task['id']):
        if update['type'] == 'progress':
            print(f'Progress: {update["progress"] * 100}%')
        elif update['type'] == 'completed':
            print('Task completed!')
            break
        elif update['type'] == 'error':
            print(f'Task failed: {update["error"]}')
            break

# Run the example
asyncio.run(create_and_monitor_task())
"""  # noqa: W293 (the example's own blank lines)


def _account(platform) -> tuple[str, str]:
    email = f"sdk-{secrets.token_hex(4)}@example.com"
    response = httpx.post(f"{platform.base_url}/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email, PASSWORD


@pytest.fixture
def sdk(platform) -> Client:
    email, password = _account(platform)
    with Client(platform.base_url, email=email, password=password) as client:
        yield client


def test_sync_and_async_clients_share_one_api(platform, sdk) -> None:
    me = sdk.users.me()  # logs in with email + password on first use
    assert me.email == sdk.user["email"] and me["id"] == me.id
    project = sdk.projects.create(name=f"sdk-{secrets.token_hex(3)}", description="SDK e2e")
    key = sdk.auth.create_api_key("sdk-e2e", permissions=["projects:read", "tasks:read", "tasks:write"])
    assert key.key.startswith("ao_")

    async def main() -> tuple[Any, Any]:
        async with AsyncClient(platform.base_url + "/api/v1", api_key=key.key) as client:
            fetched = await client.projects.get(project.id)
            mine = [p.id async for p in client.projects.list()]
            with pytest.raises(NotFound) as caught:
                await client.tasks.get("00000000-0000-7000-8000-000000000000")
            return fetched, (mine, caught.value)

    fetched, (mine, missing) = asyncio.run(main())
    assert fetched.id == project.id and fetched.name == project.name and project.id in mine
    assert missing.status == 404 and missing.code == "NOT_FOUND" and missing.correlation_id

    # Seed 004's example client: a requirement is accepted and its task and workspace can be read (no LLM is
    # configured here, so its pipeline fails at its first stage; tests/e2e/test_requirements.py runs one).
    legacy = OrchestratorClient(platform.base_url, api_key=sdk.auth.create_api_key("seed-004").key)
    task = legacy.submit_requirement("Create a simple calculator web app")
    assert task["status"] == "created" and len(task["agents_assigned"]) == 4
    assert legacy.get_task_status(task["task_id"])["type"] == "requirement"
    assert legacy.list_workspace_files() == {"files": []}


def _drive_task(
    platform, sdk: Client, approver: dict, project_id: str, agent_id: str, printed: list[str], errors: list
) -> None:
    """The other side of the example: approve its P1 task, hand it to an agent, report progress, and finish
    once the example has printed the progress (its watcher reads the task every 0.5 s)."""
    alive = threading.Event()

    def worker_heartbeats() -> None:  # an external worker keeps itself online, or the router skips it
        while not alive.wait(1.0):
            try:
                sdk.agents.heartbeat(agent_id)
            except Exception as exc:  # reported by the test
                errors.append(exc)
                return

    threading.Thread(target=worker_heartbeats, daemon=True).start()
    try:
        admin = Client(platform.base_url, token=approver["Authorization"].removeprefix("Bearer "))
        task = _eventually(lambda: next(iter(sdk.projects.tasks(project_id)), None), timeout_s=30, what="task")
        approval = _eventually(
            lambda: next(iter(admin.approvals.pending(task_id=task.id)), None),
            timeout_s=30,
            what="the task's approval",
        )
        admin.approvals.approve(approval.id)
        if sdk.tasks.get(task.id).status == "pending":
            with contextlib.suppress(Conflict):  # the router assigned it meanwhile (to this online worker)
                sdk.tasks.assign(task.id, agent_id)
        sdk.tasks.set_status(task.id, "in_progress", progress=0.5)
        deadline = time.monotonic() + 30  # then finish anyway: the test's assertions say what was missed
        while not any(line.startswith("Progress: 50.0%") for line in printed) and time.monotonic() < deadline:
            time.sleep(0.1)
        sdk.tasks.set_status(task.id, "completed", result={"done": True})
    except Exception as exc:  # reported by the test
        errors.append(exc)
    finally:
        alive.set()


def test_the_api_guides_python_example_runs_as_written(platform, sdk, approver, capsys) -> None:
    project = sdk.projects.create(name=f"seed-{secrets.token_hex(3)}")
    agent = sdk.agents.create(name=f"worker-{secrets.token_hex(3)}", mode="external")
    sdk.agents.deploy(agent.id)
    key = sdk.auth.create_api_key("seed-example")
    code = (
        SEED_EXAMPLE.replace("http://localhost:3000", platform.base_url)
        .replace("your-api-key", key.key)
        .replace("proj-123", project.id)
    )
    errors: list[Exception] = []
    printed: list[str] = []

    def print_(*args, **kwargs) -> None:  # the example's print, seen by the driver too
        printed.append(" ".join(str(arg) for arg in args))
        print(*args, **kwargs)

    def example() -> None:
        try:
            exec(compile(code, "api-guide-example.py", "exec"), {"__name__": "__example__", "print": print_})  # noqa: S102
        except Exception as exc:  # reported by the test
            errors.append(exc)

    driver = threading.Thread(target=_drive_task, args=(platform, sdk, approver, project.id, agent.id, printed, errors))
    driver.start()
    # The example watches its task until it ends, with no timeout of its own: it runs in a thread so that a
    # task that never ends fails this test instead of hanging the session.
    runner = threading.Thread(target=example, daemon=True)
    runner.start()
    runner.join(timeout=120)
    driver.join(timeout=60)
    assert not errors, errors
    assert not runner.is_alive(), f"the example still watches its task; it printed {printed}"
    out = capsys.readouterr().out
    assert out.startswith("Task created: ") and "Progress: 50.0%" in out and out.rstrip().endswith("Task completed!")
    sdk.agents.undeploy(agent.id)


def test_lists_page_through_everything(sdk) -> None:
    tag = f"page{secrets.token_hex(3)}"
    created = [sdk.tasks.create(title=f"t{i}", priority="low", tags=[tag]).id for i in range(7)]
    listed = [task.id for task in sdk.tasks.list(tags=tag, limit=3)]  # 3 pages of 3, 3, 1
    assert sorted(listed) == sorted(created) and len(listed) == 7
    first = sdk.tasks.page(1, limit=3, tags=tag)
    assert len(first) == 3 and first.has_next and first.total == 7 and first.pagination["pages"] == 3
    assert listed == [task.id for task in sdk.tasks.list(tags=tag)]  # newest first, whatever the page size


def _workflow(sdk: Client, *nodes: dict) -> Any:
    agent = sdk.agents.create(name=f"flow-{secrets.token_hex(3)}")
    edges = [{"source": a["id"], "target": b["id"]} for a, b in pairwise(nodes)]
    return sdk.workflows.create(agent.id, name="Flow", workflow_data={"nodes": list(nodes), "edges": edges})


def test_a_workflow_run_waits_with_progress_and_a_failure_raises(sdk, capsys) -> None:
    workflow = _workflow(
        sdk,
        {"id": "in", "type": "input"},
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "nap", "type": "python", "config": {"function": f"{FIX}:sleep"}},
        {"id": "out", "type": "output"},
    )
    run = sdk.workflows.execute(workflow.id, {"value": 41, "seconds": 1}).wait(timeout=120)
    assert run.status == "completed" and run.output["value"] == 42
    assert "4/4" in capsys.readouterr().err  # the progress bar: steps done of the graph's nodes
    assert [step.node_id for step in run.steps()] == ["in", "add", "nap", "out"]
    assert isinstance(run.logs(), list) and "<table>" in run._repr_html_()

    broken = _workflow(
        sdk,
        {"id": "in", "type": "input"},
        {"id": "boom", "type": "python", "retry_count": 0, "config": {"function": f"{FIX}:broken"}},
        {"id": "out", "type": "output"},
    )
    with pytest.raises(RunFailed) as caught:
        sdk.workflows.execute(broken.id, {}).wait(timeout=120, progress=False)
    assert caught.value.step == "boom" and "this node always fails" in caught.value.error
    assert caught.value.run.status == "failed"


class _DropStreams(httpx.HTTPTransport):
    """Cuts each of the first `drops` event streams after `after` chunks, like a proxy timing out."""

    def __init__(self, drops: int, after: int) -> None:
        super().__init__()
        self.drops, self.after, self.streams = drops, after, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not request.url.path.endswith("/stream"):
            return response
        self.streams.append(request.headers.get("Last-Event-ID"))
        if self.drops <= 0:
            return response
        self.drops -= 1
        inner, after = response.stream, self.after

        class Cut(httpx.SyncByteStream):
            def __iter__(self):
                for index, chunk in enumerate(inner):
                    if index >= after:
                        raise httpx.RemoteProtocolError("connection dropped")
                    yield chunk

            def close(self) -> None:
                inner.close()

        return httpx.Response(response.status_code, headers=response.headers, stream=Cut(), request=request)


def test_an_interrupted_run_stream_resumes_without_loss_or_duplicates(platform, sdk) -> None:
    workflow = _workflow(
        sdk,
        {"id": "in", "type": "input"},
        *[{"id": f"s{i}", "type": "python", "config": {"function": f"{FIX}:sleep"}} for i in range(3)],
        {"id": "out", "type": "output"},
    )
    email, password = sdk._credentials.email, sdk._credentials.password
    dropping = _DropStreams(drops=3, after=2)
    with Client(platform.base_url, email=email, password=password, transport=dropping) as client:
        run = client.workflows.execute(workflow.id, {"seconds": 0.5})
        events = list(run.stream())
        # Each reconnect carried the last id received (a finished run's stream may end within its first chunks,
        # so not every cut is always needed).
        assert len(dropping.streams) >= 2 and dropping.streams[0] is None and all(dropping.streams[1:])
    # The same run read in one piece after it ended.
    whole = list(sdk.executions.stream(run.id))
    steps = [e.data["seq"] for e in events if e.event == "step"]
    assert steps == sorted(set(steps)) and steps == [e.data["seq"] for e in whole if e.event == "step"]
    assert [e.data["id"] for e in events if e.event == "log"] == [e.data["id"] for e in whole if e.event == "log"]
    assert [e.event for e in events][-1] == "end" and sum(e.event == "end" for e in events) == 1
    assert sdk.executions.get(run.id).status == "completed"
    assert sdk.executions.page(1, limit=100, workflow_id=workflow.id).total == 1  # never submitted again


def _guide_blocks() -> list[str]:
    """The `python` blocks of docs/sdk.md, except those the line before marks "not run"."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "sdk.md").read_text()
    blocks, lines, inside, skip, previous = [], text.splitlines(), False, False, ""
    for line in lines:
        if not inside and line.strip() == "```python":
            inside, skip, current = True, previous.startswith("<!-- not run"), []
        elif inside and line.strip() == "```":
            inside = False
            if not skip:
                blocks.append("\n".join(current))
        elif inside:
            current.append(line)
        if line.strip():
            previous = line.strip()
    return blocks


def test_the_sdk_guide_examples_run(platform, sdk, monkeypatch, capsys) -> None:
    key = sdk.auth.create_api_key("sdk-guide")
    monkeypatch.setenv("ORCHESTRATOR_URL", platform.base_url)
    monkeypatch.setenv("ORCHESTRATOR_API_KEY", key.key)
    namespace: dict[str, Any] = {"__name__": "__guide__"}
    blocks = _guide_blocks()
    assert len(blocks) >= 8
    for number, block in enumerate(blocks):
        exec(compile(block, f"docs/sdk.md block {number}", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    for expected in (
        "pending P3 True",
        "Started on the examples",
        "['Draft', 'Publish', 'Review', 'Write",
        "2 4 True",
        "404 NOT_FOUND True",
        "priority",
        "completed 42",
        "['in', 'add', 'out']",
        "add | ",
        "3 end",
        "error no agent for it",
        "(True, True)",
    ):
        assert expected in out, (expected, out)
    print(out)


NOTEBOOK_SCRIPT = """
import json, os, sys, time
from orchestrator_sdk import Client, Workflow

FACTOR = 3  # a module-level name of __main__, as a notebook cell defines it


def triple(state):
    return {"value": state["value"] * FACTOR, "pid": os.getpid()}


client = Client(os.environ["ORCHESTRATOR_URL"], token=os.environ["ORCHESTRATOR_TOKEN"])
workflow = Workflow("from-main").step(triple)
timings = []
for attempt in range(2):  # the second submission finds its code on the platform
    started = time.perf_counter()
    run = client.workflows.submit(workflow, {"value": 14}).wait(timeout=120, progress=False)
    timings.append(time.perf_counter() - started)
    result = {"status": run.data.status, "value": run.output["value"], "actor": run.data.actor_name}
print(json.dumps({**result, "first_s": timings[0], "repeat_s": timings[1]}))
"""


def test_a_python_defined_workflow_ships_a_main_function_to_the_cluster(platform, approver, sdk, tmp_path) -> None:
    import json
    import subprocess
    import sys

    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK_SCRIPT)
    token = approver["Authorization"].removeprefix("Bearer ")  # admins may ship code by default
    env = {**platform.env, "ORCHESTRATOR_URL": platform.base_url, "ORCHESTRATOR_TOKEN": token}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed" and result["value"] == 42
    assert result["actor"].startswith("run:")  # a process of its own, not a pooled one
    print(f"python-defined 1-step workflow: first {result['first_s']:.2f}s, repeat {result['repeat_s']:.2f}s")

    # A role that settings do not allow (self-registered accounts are `agent`; the default is admins only).
    from orchestrator_sdk import AuthorizationError, Workflow

    with pytest.raises(AuthorizationError, match="may not ship code"):
        sdk.workflows.submit(Workflow("refused").step(_local_step), {"value": 1})


def _local_step(state):
    return {"value": state["value"] + 1}


def test_a_429_from_the_platform_is_waited_out(sdk) -> None:
    """Requirements are limited to 10 a minute per caller: the 11th answers 429 with Retry-After, which the
    client waits out and then succeeds (the pipelines themselves fail at once here: no LLM is configured)."""
    started = time.monotonic()
    accepted = [sdk.requirements.submit(f"Requirement {n}").task_id for n in range(11)]
    waited = time.monotonic() - started
    assert len(set(accepted)) == 11 and waited >= 2.0, waited


def test_live_events_over_the_websocket_resume_after_a_drop_without_loss(sdk) -> None:
    project = sdk.projects.create(name=f"live-{secrets.token_hex(3)}")
    stream = sdk.events.subscribe("tasks", {"project_id": project.id})
    received: list[dict] = []
    done = threading.Event()

    def follow() -> None:
        for message in stream:
            if message["type"] == "task.created":
                received.append(message)
            if len(received) == 3:
                done.set()
                return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert stream.subscribed.wait(30), "not subscribed"
    sdk.tasks.create(title="first", project_id=project.id)
    _eventually(lambda: len(received) == 1, timeout_s=30, what="the first event")
    stream.drop()  # as a network failure would
    sdk.tasks.create(title="while down", project_id=project.id)
    _eventually(lambda: stream.reconnects >= 1, timeout_s=30, what="a reconnect")
    sdk.tasks.create(title="after", project_id=project.id)
    assert done.wait(30), received
    stream.close()
    titles = [message["data"].get("title") or message["data"].get("task_id") for message in received]
    assert len({message["id"] for message in received}) == 3, titles  # each once, none lost
