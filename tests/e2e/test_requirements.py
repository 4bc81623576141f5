"""Seed 004 on the running platform: a requirement's pipeline survives its run actor killed mid-stage
(each stage recorded once), and the file it wrote runs in the sandbox with its output live over the
WebSocket alias and the SSE stream. The LLM is a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import time

import httpx
from websockets.sync.client import connect

from tests.e2e.test_agent_actors import _eventually
from tests.e2e.test_workflow_runs import _ended, _executing
from tests.fixtures.scripted_llm import DEFAULT_SCRIPT, ScriptedLLM, serve

SLOW_HELLO = "```python path=hello_world.py\nimport time\ntime.sleep(2)\nprint('Hello World', flush=True)\n```\n"


def _requirement(http: httpx.Client, headers: dict, llm_url: str) -> dict:
    saved = http.post(
        "/api/v1/settings",
        headers=headers,
        json={"openai_base_url": llm_url, "llm_model": "tiny", "openai_api_key": "sk-e2e-0123456789"},
    )
    assert saved.status_code == 200, saved.text
    accepted = http.post("/api/v1/requirements", headers=headers, json={"requirement": "Hello World", "priority": 5})
    assert accepted.status_code == 201, accepted.text
    return accepted.json()


def test_a_requirement_completes_although_its_run_actor_is_killed_mid_stage(http, owner, platform) -> None:
    llm = ScriptedLLM(
        {**DEFAULT_SCRIPT, "implementer": ["First:\n" + SLOW_HELLO, "Fixed:\n" + SLOW_HELLO]}, delays={"analyst": 3.0}
    )
    with serve(llm) as url:
        accepted = _requirement(http, owner, url)
        _eventually(lambda: llm.count("analyst") >= 1, timeout_s=60, what="the analyst asked")
        [process] = _eventually(lambda: _executing(platform), timeout_s=10, what="the executing run actor")
        process.send_signal(signal.SIGKILL)
        run = _ended(http, owner, accepted["execution_id"], timeout_s=120)
    assert run["status"] == "completed", run["error"]
    assert run["resumes"] >= 1 and llm.count("analyst") >= 2  # the killed stage was asked again …
    steps = [step["node_id"] for step in run["steps"] if step["status"] == "completed"]
    # … and recorded once; the validator's rejection is the only repeat.
    assert steps == ["input", "analyst", "implementer", "validator", "implementer", "validator", "integrator", "output"]
    task = http.get(f"/api/v1/tasks/{accepted['task_id']}", headers=owner).json()
    assert task["status"] == "completed" and set(task["results"]) == {
        "analysis",
        "implementation",
        "validation",
        "integration",
    }

    project = accepted["project_id"]
    files = http.get(f"/api/v1/projects/{project}/workspace/files", headers=owner).json()["files"]
    assert [f["path"] for f in files] == ["implementation/hello_world.py"]
    started = http.post(f"/api/v1/projects/{project}/workspace/run/implementation/hello_world.py", headers=owner)
    assert started.status_code == 201, started.text
    body = started.json()
    ws_url = body["output_stream"]
    printed: list[str] = []
    with connect(ws_url, additional_headers=owner, open_timeout=30) as ws:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Hello World" not in "".join(printed):
            message = json.loads(ws.recv(timeout=60))
            if message["type"] == "execution_output":
                assert message["execution_id"] == body["execution_id"]
                printed.append(message["output"])
    assert "Hello World" in "".join(printed)
    ended = _ended(http, owner, body["execution_id"])
    assert ended["status"] == "completed" and ended["output"]["run"]["exit_code"] == 0
    with http.stream("GET", f"/api/v1/executions/{body['execution_id']}/stream", headers=owner) as stream:
        text = "".join(stream.iter_text())
    assert "event: execution_output" in text and "Hello World" in text
