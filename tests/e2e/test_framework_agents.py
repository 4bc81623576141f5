"""Framework agents on the live platform, each in its own Ray actor, run against a local OpenAI-compatible
server that this test starts: a CrewAI crew and an AutoGen agent side by side, with tasks routed to them by
type; and, for each adapter, a tool call that waits for a person, with the task's output events and figures.

The first needs both frameworks in one environment: CrewAI cannot share one with the `pydantic-ai` and
`openai-agents` extras, so it runs where `.ci/run` installs `crewai` and `autogen` together
(`.venv-isolated`), and is skipped elsewhere; the second runs for each framework installed where it runs
(`.ci/run` runs this file in both environments)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.test_agent_actors import AGENTS, _create, _eventually, _task_done
from tests.fixtures.openai_server import USAGE, OpenAIServer, serve

crewai_and_autogen = pytest.mark.skipif(
    any(importlib.util.find_spec(module) is None for module in ("crewai", "autogen_agentchat")),
    reason="needs CrewAI and AutoGen in one environment: pip install -e '.[crewai,autogen]'",
)
TASKS = "/api/v1/tasks"
WEATHER = "tests.fixtures.agent_tools:get_weather"


def _deployed(http: httpx.Client, headers: dict[str, str], **body: Any) -> dict:
    """Deployed and active. Importing a framework and building its agent may outlast the deploy call's own
    wait (202, still deploying): then the agent becomes active when its actor is ready."""
    agent = _create(http, headers, **body)
    response = http.post(f"{AGENTS}/{agent['id']}/deploy", headers=headers)
    assert response.status_code in (200, 202), response.text
    return _eventually(
        lambda: (now := http.get(f"{AGENTS}/{agent['id']}", headers=headers).json())["status"] == "active" and now,
        timeout_s=120,
        what=f"{body.get('framework')} agent active",
    )


@pytest.fixture
def llm_url() -> Iterator[str]:
    # The agents' actors reach it on the loopback address, which the platform's fixture allow-lists.
    with serve(OpenAIServer(answer="Here is the forecast:")) as url:
        yield url


@crewai_and_autogen
def test_a_crewai_crew_and_an_autogen_agent_take_the_tasks_of_their_types(http, owner, llm_url) -> None:
    llm = {"base_url": llm_url, "api_key": "local", "model": "local-model"}
    crew = {
        "agents": [{"role": "Writer", "goal": "Document the weather.", "backstory": "A technical writer."}],
        "tasks": [{"description": "Document {topic}.", "expected_output": "One paragraph."}],
    }
    writer = _deployed(http, owner, framework="crewai", type="faq", configuration={"crew": crew, "llm": llm})
    assistant = {"instructions": "Use the tool.", "tools": [WEATHER], "llm": llm}
    coder = _deployed(http, owner, framework="autogen", type="dev", configuration=assistant)
    try:
        documentation = http.post(
            TASKS, headers=owner, json={"type": "documentation", "payload": {"topic": "the forecast"}}
        )
        bugfix = http.post(TASKS, headers=owner, json={"type": "bugfix", "payload": {"input": "Weather in Paris?"}})
        assert documentation.status_code == bugfix.status_code == 201, (documentation.text, bugfix.text)

        documented = _task_done(http, owner, documentation.json()["id"])
        assert documented["status"] == "completed", documented.get("error")
        assert documented["agent_id"] == writer["id"]
        assert documented["result"] == {
            "output": "Here is the forecast:",
            "usage": {
                "input_tokens": USAGE["prompt_tokens"],
                "output_tokens": USAGE["completion_tokens"],
                "total_tokens": USAGE["total_tokens"],
            },
            "tool_calls": [],
        }

        fixed = _task_done(http, owner, bugfix.json()["id"])
        assert fixed["status"] == "completed", fixed.get("error")
        assert fixed["agent_id"] == coder["id"]
        assert fixed["result"]["output"] == "Here is the forecast: It is sunny in Paris."
        assert fixed["result"]["tool_calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]
        assert fixed["result"]["usage"]["total_tokens"] == 2 * USAGE["total_tokens"]
    finally:
        for agent in (writer, coder):
            http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)


def _installed(framework: str, module: str) -> Any:
    reason = f"{module} is not installed here: pip install -e '.[{framework}]'"
    missing = importlib.util.find_spec(module) is None
    return pytest.param(framework, marks=pytest.mark.skipif(missing, reason=reason), id=framework)


# Every adapter, where its framework is installed (CrewAI and CAMEL in `.ci/run`'s second environment).
FRAMEWORKS = [
    _installed(framework, module)
    for framework, module in (
        ("pydantic-ai", "pydantic_ai"),
        ("openai-agents", "agents"),
        ("autogen", "autogen_agentchat"),
        ("smolagents", "smolagents"),
        ("crewai", "crewai"),
        ("camelai", "camel"),
    )
]
# The adapters that stream the model's text into task.output (the others send their tool calls only).
STREAMING = ("pydantic-ai", "openai-agents", "autogen")


def _held(http: httpx.Client, owner: dict[str, str], task_id: str) -> dict:
    """The approval the task waits on, once it waits; the tool must not have run before."""

    def waiting() -> dict | None:
        task = http.get(f"{TASKS}/{task_id}", headers=owner).json()
        assert task["status"] not in ("completed", "failed"), task  # the tool must not run unapproved
        return task if task["status"] == "awaiting_approval" else None

    _eventually(waiting, timeout_s=90, what=f"task {task_id} waiting for the tool call's approval")
    pending = http.get("/api/v1/approvals/pending", headers=owner, params={"task_id": task_id}).json()
    [approval] = pending["approvals"]
    return approval


def _output(http: httpx.Client, owner: dict[str, str], task_id: str) -> list[dict]:
    """The task's output pieces in order, from its task.output events (their ids are time-ordered)."""
    events = http.get("/api/v1/events", headers=owner, params={"type": "task.output", "task_id": task_id}).json()
    ordered = sorted(events["events"], key=lambda event: event["id"])
    return [item for event in ordered for item in event["payload"]["items"]]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_framework_agents_tool_call_waits_for_a_person_who_approves_once_and_rejects_once(
    http, owner, approver, llm_url, framework: str
) -> None:
    """Deployed, routed a task by type: the tool call waits for an approval (the agent holds no slot); approved,
    the task runs again and completes with the tool's result, its tokens and cost, and its output as events;
    a second task's call rejected, the tool does not run and the model is told."""
    llm = {"base_url": llm_url, "api_key": "local", "model": "local-model", "cost_per_1k_tokens": 2.0}
    configuration = {
        "instructions": "Use the tool.",
        "tools": [WEATHER],
        "llm": llm,
        "tool_approval": {"tools": ["get_weather"], "priority": "P2"},
    }
    kind = "forecast-" + framework
    agent = _deployed(http, owner, framework=framework, type=kind, configuration=configuration)
    ask = {"type": kind, "payload": {"input": "Weather in Paris?"}}
    try:
        created = http.post(TASKS, headers=owner, json=ask)
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        approval = _held(http, owner, task_id)
        assert approval["tool_call"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
        assert approval["agent_id"] == agent["id"] and approval["priority"] == "P2"
        assert http.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 0

        decided = http.post(f"/api/v1/approvals/{approval['id']}/approve", headers=approver, json={})
        assert decided.status_code == 200, decided.text
        done = _task_done(http, owner, task_id)
        assert done["status"] == "completed", done.get("error")
        assert done["agent_id"] == agent["id"]
        assert done["result"]["output"] == "Here is the forecast: It is sunny in Paris."
        assert done["result"]["tool_calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]
        # The run that completed it: two model calls (the held run's are not counted).
        tokens = 2 * USAGE["total_tokens"]
        assert done["tokens_used"] == tokens and done["cost"] == round(tokens / 1000 * 2.0, 6)
        # Its output as it ran: the call, held; then the call again, its result (and the answer's text as the
        # model streamed it).
        items = _output(http, owner, task_id)
        kinds = [item["kind"] for item in items]
        assert kinds.count("tool_call") == 2 and kinds.count("tool_result") == 1, items
        assert {"kind": "tool_result", "name": "get_weather", "result": "It is sunny in Paris."} in items
        if framework in STREAMING:
            assert "".join(item["text"] for item in items if item["kind"] == "text") == done["result"]["output"]

        refused = http.post(TASKS, headers=owner, json=ask).json()
        approval = _held(http, owner, refused["id"])
        decided = http.post(
            f"/api/v1/approvals/{approval['id']}/reject", headers=approver, params={"reason": "not today"}
        )
        assert decided.status_code == 200, decided.text
        done = _task_done(http, owner, refused["id"])
        assert done["status"] == "completed", done.get("error")
        assert "rejected this call of get_weather: not today" in done["result"]["output"]
        assert all(item.get("result") != "It is sunny in Paris." for item in _output(http, owner, refused["id"]))
    finally:
        http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)
