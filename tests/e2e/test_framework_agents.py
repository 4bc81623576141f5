"""A CrewAI crew and an AutoGen agent deployed side by side on the live platform, each in its own Ray actor,
with tasks routed to them by type and run against a local OpenAI-compatible server that this test starts.

Needs both frameworks in one environment: CrewAI cannot share one with the `pydantic-ai` and `openai-agents`
extras, so this runs where `.ci/run` installs `crewai` and `autogen` together (`.venv-isolated`), and is
skipped elsewhere."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.test_agent_actors import AGENTS, _create, _eventually, _task_done
from tests.fixtures.openai_server import USAGE, OpenAIServer, serve

pytestmark = pytest.mark.skipif(
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
