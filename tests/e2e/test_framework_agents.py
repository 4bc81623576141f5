"""Framework agents on the live platform, each in its own Ray actor, run against a local OpenAI-compatible
server that this test starts: a CrewAI crew and an AutoGen agent side by side, with tasks routed to them by
type; and a tool call that waits for a person, with the task's output events and figures.

The first needs both frameworks in one environment: CrewAI cannot share one with the `pydantic-ai` and
`openai-agents` extras, so it runs where `.ci/run` installs `crewai` and `autogen` together
(`.venv-isolated`), and is skipped elsewhere; the second needs Pydantic AI, in the main environment."""

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
pydantic_ai = pytest.mark.skipif(
    importlib.util.find_spec("pydantic_ai") is None, reason="needs Pydantic AI: pip install -e '.[pydantic-ai]'"
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


@pydantic_ai
def test_a_tool_call_waits_for_a_person_and_the_task_goes_on_when_approved(http, owner, approver, llm_url) -> None:
    llm = {"base_url": llm_url, "api_key": "local", "model": "local-model", "cost_per_1k_tokens": 2.0}
    configuration = {
        "instructions": "Use the tool.",
        "tools": [WEATHER],
        "llm": llm,
        "tool_approval": {"tools": ["get_weather"], "priority": "P2"},
    }
    agent = _deployed(http, owner, framework="pydantic-ai", type="forecast", configuration=configuration)
    try:
        created = http.post(TASKS, headers=owner, json={"type": "forecast", "payload": {"input": "Weather in Paris?"}})
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]

        def waiting() -> dict | None:
            task = http.get(f"{TASKS}/{task_id}", headers=owner).json()
            assert task["status"] not in ("completed", "failed"), task  # the tool must not run unapproved
            return task if task["status"] == "awaiting_approval" else None

        _eventually(waiting, what="the task waiting for the tool call's approval")
        [approval] = http.get("/api/v1/approvals/pending", headers=owner, params={"task_id": task_id}).json()[
            "approvals"
        ]
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
        # The run that completed it: two model calls (the first run's, held, is not counted).
        assert done["tokens_used"] == 2 * USAGE["total_tokens"] and done["cost"] == round(
            2 * USAGE["total_tokens"] / 1000 * 2.0, 6
        )

        # Its output as it ran: the call, held; then the call again, its result and the answer's text as the
        # model streamed it.
        events = http.get("/api/v1/events", headers=owner, params={"type": "task.output", "task_id": task_id}).json()
        # Event ids are time-ordered (UUIDv7).
        ordered = sorted(events["events"], key=lambda event: event["id"])
        items = [item for event in ordered for item in event["payload"]["items"]]
        kinds = [item["kind"] for item in items]
        assert kinds.count("tool_call") == 2 and kinds.count("tool_result") == 1, items
        assert {"kind": "tool_result", "name": "get_weather", "result": "It is sunny in Paris."} in items
        assert "".join(item["text"] for item in items if item["kind"] == "text") == done["result"]["output"]
    finally:
        http.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)
