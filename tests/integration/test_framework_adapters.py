"""The LLM agent frameworks' adapters (Pydantic AI, the OpenAI Agents SDK, AutoGen, smolagents, CrewAI, CAMEL)
against a local OpenAI-compatible server (tool calls, usage, errors), then what each framework adds: AutoGen
teams, CrewAI crews. Each is skipped, saying which extra to install, when its framework is not installed."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from typing import Any

import pytest

from core.errors import FrameworkUnavailable
from frameworks import ENTRY_POINT_GROUP, AgentSpec, adapter_for, check_code_paths
from frameworks.context import TaskContext, ToolApprovalRequired, running
from tests.fixtures import agent_tools
from tests.fixtures.openai_server import USAGE, OpenAIServer, serve

FRAMEWORKS = {
    "pydantic-ai": "pydantic_ai",
    "openai-agents": "agents",
    "autogen": "autogen_agentchat",
    "crewai": "crewai",
    "smolagents": "smolagents",
    "camelai": "camel",
}
WEATHER = "tests.fixtures.agent_tools:get_weather"
# The adapters that pass the model's text on as it streams (the others send their tool calls only).
STREAMING = ("pydantic-ai", "openai-agents", "autogen")


def _installed(framework: str) -> Any:
    module = FRAMEWORKS[framework]
    reason = f"{module} is not installed: pip install -e '.[{framework}]'"
    return pytest.param(
        framework, marks=pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=reason), id=framework
    )


ALL = [_installed(name) for name in FRAMEWORKS]


@pytest.fixture
def server() -> Iterator[tuple[OpenAIServer, str]]:
    llm = OpenAIServer(answer="Here is the forecast:")
    agent_tools.CALLS.clear()
    with serve(llm) as url:
        yield llm, url


def _spec(
    framework: str,
    url: str,
    *,
    model: str | None = None,
    allowed: tuple[str, ...] = ("127.0.0.1",),
    **configuration: Any,
) -> AgentSpec:
    configuration.setdefault("llm", {"base_url": url, "api_key": "local-key", "model": "local-model"})
    return AgentSpec(
        id="a1",
        name="Weather",
        framework=framework,
        mode="hosted",
        version="1.0.0",
        model=model,
        configuration=configuration,
        code_modules=("tests.fixtures",),
        http_allowed=allowed,
    )


def _run(spec: AgentSpec, payload: dict[str, Any]) -> dict[str, Any]:
    runtime = adapter_for(spec.framework).load(spec)
    try:
        return runtime.invoke(payload)
    finally:
        runtime.close()


@pytest.mark.parametrize("framework", ALL)
def test_a_declarative_agent_answers_with_the_models_text(framework: str, server) -> None:
    llm, url = server
    result = _run(_spec(framework, url, instructions="Answer briefly."), {"input": "Hello?"})
    assert result == {
        "output": "Here is the forecast:",
        "usage": {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
        "tool_calls": [],
    }
    [asked] = llm.asked
    assert asked["model"] == "local-model"
    # The instructions are in the system prompt (CrewAI and smolagents wrap them in their own).
    assert asked["messages"][0]["role"] == "system" and "Answer briefly." in str(asked["messages"][0]["content"])
    assert asked["messages"][-1]["role"] == "user" and "Hello?" in str(asked["messages"][-1]["content"])


@pytest.mark.parametrize("framework", ALL)
def test_a_tool_is_called_once_and_its_result_reaches_the_answer(framework: str, server) -> None:
    llm, url = server
    spec = _spec(framework, url, agent={"instructions": "Use the tool.", "tools": [WEATHER]})
    result = _run(spec, {"prompt": "Weather in Paris?"})
    assert agent_tools.CALLS == [{"city": "Paris"}]
    assert result["output"] == "Here is the forecast: It is sunny in Paris."
    assert result["tool_calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]
    twice = USAGE["prompt_tokens"] * 2, USAGE["completion_tokens"] * 2
    assert result["usage"] == {"input_tokens": twice[0], "output_tokens": twice[1], "total_tokens": sum(twice)}
    offered = [tool["function"]["name"] for tool in llm.asked[0]["tools"]]
    assert len(llm.asked) == 2 and offered in (["get_weather"], ["get_weather", "final_answer"])  # smolagents' own
    # The tool's description and parameters come from its signature and docstring.
    assert llm.asked[0]["tools"][0]["function"]["parameters"]["properties"]["city"]["type"] == "string"


def _attempt(runtime: Any, context: TaskContext, payload: dict[str, Any]) -> dict[str, Any] | None:
    """One run of a task as the agent's actor makes it: None when it stopped (held, or failed)."""
    with running(context):
        try:
            return runtime.invoke(payload)
        except (Exception, ToolApprovalRequired):
            return None


@pytest.mark.parametrize("framework", ALL)
def test_a_tool_call_that_needs_approval_waits_and_then_runs_or_is_refused(framework: str, server) -> None:
    llm, url = server
    agent = {"instructions": "Use the tool.", "tools": [WEATHER]}
    spec = _spec(framework, url, agent=agent, tool_approval={"tools": ["get_weather"]})
    runtime = adapter_for(framework).load(spec)
    call = {"name": "get_weather", "args": {"city": "Paris"}}
    ask = {"prompt": "Weather in Paris?"}
    try:
        # No decision yet: the call is held, the tool does not run.
        pieces: list[dict[str, Any]] = []
        first = TaskContext("t1", emit=pieces.append)
        assert _attempt(runtime, first, ask) is None
        assert first.held == call and agent_tools.CALLS == []
        assert len(llm.asked) == 1  # the run stopped at the call: no model call after it
        assert {"kind": "tool_call", **call} in pieces
        # Approved: the task runs again, and the same call goes on.
        pieces.clear()
        approved = TaskContext("t1", emit=pieces.append, decisions=[{**call, "approved": True}])
        result = _attempt(runtime, approved, ask)
        assert approved.held is None and agent_tools.CALLS == [{"city": "Paris"}]
        assert result is not None and result["output"] == "Here is the forecast: It is sunny in Paris."
        assert result["usage"]["total_tokens"] == 2 * USAGE["total_tokens"]  # streamed or not
        assert {"kind": "tool_result", "name": "get_weather", "result": "It is sunny in Paris."} in pieces
        if framework in STREAMING:  # the answer's text arrived in pieces as the model streamed it
            text = [piece["text"] for piece in pieces if piece["kind"] == "text"]
            assert len(text) > 1 and "".join(text) == result["output"]
        # Rejected: the tool does not run, and the model is told why.
        agent_tools.CALLS.clear()
        rejected = TaskContext("t1", decisions=[{**call, "approved": False, "reason": "not today"}])
        result = _attempt(runtime, rejected, ask)
        assert rejected.held is None and agent_tools.CALLS == []
        assert result is not None and "rejected this call of get_weather: not today" in result["output"]
    finally:
        runtime.close()


@pytest.mark.parametrize("framework", ALL)
def test_an_agent_named_by_import_path_runs_on_the_configured_provider(framework: str, server) -> None:
    llm, url = server
    path = f"tests.fixtures.{framework.replace('-', '_')}_agents:agent"
    result = _run(_spec(framework, url, agent=path), {"city": "Oslo"})
    assert result["output"] == "Here is the forecast: It is sunny in Paris."
    assert agent_tools.CALLS == [{"city": "Paris"}]
    assert llm.asked[0]["model"] == "local-model"  # configuration.llm overrides the agent's own model
    assert '{"city": "Oslo"}' in str(llm.asked[0]["messages"][-1]["content"])  # no input/prompt: the payload


@pytest.mark.parametrize("framework", ALL)
def test_the_agents_model_is_used_when_the_configuration_names_none(framework: str, server) -> None:
    llm, url = server
    _run(_spec(framework, url, model="agent-model", llm={"base_url": url}, instructions="Hi."), {"input": "x"})
    assert llm.asked[0]["model"] == "agent-model"


@pytest.mark.parametrize("framework", ALL)
def test_without_a_provider_in_its_configuration_the_agent_uses_its_tenants_or_the_platforms(
    framework: str, server
) -> None:
    llm, url = server
    spec = _spec(framework, url, instructions="Answer briefly.", llm={})
    tenant = {"base_url": url, "model": "tenant-model", "api_key": "tenant-key"}
    result = _run(dataclasses.replace(spec, default_llm=tenant), {"input": "Hello?"})
    assert result["output"] == "Here is the forecast:"
    assert llm.asked[-1]["model"] == "tenant-model" and llm.keys[-1] == "tenant-key"
    # An endpoint the configuration names never gets the settings' key.
    own = _spec(framework, url, instructions="Answer briefly.", llm={"base_url": url, "model": "own-model"})
    _run(dataclasses.replace(own, default_llm=tenant), {"input": "Hello?"})
    assert llm.asked[-1]["model"] == "own-model" and llm.keys[-1] != "tenant-key"


@pytest.mark.parametrize("framework", ALL)
def test_a_server_error_becomes_the_tasks_error_message(framework: str, server) -> None:
    llm, url = server
    llm.fail = 500
    spec = _spec(framework, url, instructions="Hi.", llm={"base_url": url, "model": "m", "max_retries": 0})
    with pytest.raises(Exception, match="the model is overloaded") as caught:
        _run(spec, {"input": "Hello?"})
    assert "500" in str(caught.value)
    assert len(llm.asked) == 1  # max_retries: 0 is passed to the client


@pytest.mark.parametrize("framework", ALL)
def test_one_runtime_runs_many_tasks_from_several_threads(framework: str, server) -> None:
    _, url = server
    runtime = adapter_for(framework).load(_spec(framework, url, instructions="Hi."))
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda n: runtime.invoke({"input": f"task {n}"}), range(8)))
    finally:
        runtime.close()
    assert [result["output"] for result in results] == ["Here is the forecast:"] * 8


@pytest.mark.parametrize("framework", ALL)
@pytest.mark.parametrize(
    ("configuration", "allowed", "message"),
    [
        ({"instructions": "Hi."}, (), "127.0.0.1, a private address: refused"),
        ({"instructions": "Hi.", "tools": ["os:system"]}, None, "ORCHESTRATOR_AGENT_CODE_MODULES"),
        ({"agent": "tests.fixtures.agent_tools:get_weather"}, None, "is not a"),
        ({"agent": 3}, None, "configuration.agent must be an import path"),
        ({"llm": {"base_url": "http://x.test/v1", "model": "m"}}, None, "configuration.agent is required"),
        ({"instructions": "Hi.", "llm": {}}, None, "needs a model"),
        ({"instructions": "Hi.", "llm": {"base_url": "ftp://x.test/", "model": "m"}}, None, "not an http"),
    ],
)
def test_a_configuration_it_cannot_run_is_refused(framework: str, configuration: dict, allowed, message: str) -> None:
    spec = _spec(
        framework, "http://127.0.0.1:9/v1", allowed=("127.0.0.1",) if allowed is None else allowed, **configuration
    )
    with pytest.raises(ValueError, match=message):
        adapter_for(framework).load(spec)


def test_deploying_checks_the_paths_an_agent_configuration_names() -> None:
    allowed = ("tests.fixtures",)
    check_code_paths({"agent": WEATHER}, allowed)
    check_code_paths({"agent": {"instructions": "x", "tools": [WEATHER]}, "llm": {"base_url": "x"}}, allowed)
    with pytest.raises(ValueError, match=r"configuration\.agent: module 'os'"):
        check_code_paths({"agent": "os:system"}, allowed)
    with pytest.raises(ValueError, match=r"configuration\.agent\.tools\[1\]: module 'subprocess'"):
        check_code_paths({"agent": {"tools": [WEATHER, "subprocess:run"]}}, allowed)
    with pytest.raises(ValueError, match=r"configuration\.tools\[0\]: module 'os'"):
        check_code_paths({"instructions": "x", "tools": ["os:system"]}, allowed)
    with pytest.raises(ValueError, match=r"configuration\.team\.agents\[1\]\.tools\[0\]: module 'os'"):
        check_code_paths({"team": {"agents": [{"tools": [WEATHER]}, {"tools": ["os:system"]}]}}, allowed)
    with pytest.raises(ValueError, match=r"configuration\.crew\.agents\[0\]\.tools\[0\]: module 'os'"):
        check_code_paths({"crew": {"agents": [{"tools": ["os:system"]}], "tasks": []}}, allowed)


def test_importing_the_adapters_imports_no_framework() -> None:
    code = (
        "import importlib, sys\n"
        "from importlib.metadata import entry_points\n"
        "from frameworks import available_frameworks\n"
        f"for entry in entry_points(group={ENTRY_POINT_GROUP!r}): importlib.import_module(entry.module)\n"
        "available_frameworks()\n"
        "print(sorted(set(sys.modules) & {'pydantic_ai', 'agents', 'openai', 'autogen_agentchat', 'autogen_core',"
        " 'smolagents', 'crewai', 'camel', 'litellm', 'langgraph'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_a_missing_framework_is_unavailable_naming_its_extra(framework: str, monkeypatch) -> None:
    adapter = next(entry for entry in entry_points(group=ENTRY_POINT_GROUP) if entry.name == framework).load()
    monkeypatch.setattr(adapter, "requires", ("not_installed_here",))
    with pytest.raises(FrameworkUnavailable, match=rf"orchestrator\[{framework}\]") as caught:
        adapter_for(framework)
    if framework in ("crewai", "camelai"):  # it says which extras it cannot be installed beside
        assert "in an environment without the" in str(caught.value) and "openai-agents" in str(caught.value)


AUTOGEN = pytest.mark.skipif(
    importlib.util.find_spec("autogen_agentchat") is None, reason="pip install -e '.[autogen]'"
)


@AUTOGEN
def test_an_autogen_team_from_configuration_takes_turns_and_adds_up_its_usage(server) -> None:
    llm, url = server
    team = {
        "agents": [
            {"name": "Greeter", "instructions": "Greet."},
            {"name": "Forecaster", "instructions": "Use the tool.", "tools": [WEATHER]},
        ]
    }
    result = _run(_spec("autogen", url, team=team), {"input": "Weather in Paris?"})
    assert result["output"] == "Here is the forecast: It is sunny in Paris."
    assert result["tool_calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}]
    assert result["usage"]["total_tokens"] == 3 * USAGE["total_tokens"]  # a greeting, a tool call, an answer
    assert [asked["messages"][0]["content"] for asked in llm.asked] == ["Greet.", "Use the tool.", "Use the tool."]


@AUTOGEN
def test_an_autogen_team_named_by_import_path_runs_on_the_configured_provider(server) -> None:
    llm, url = server
    runtime = adapter_for("autogen").load(_spec("autogen", url, agent="tests.fixtures.autogen_agents:team"))
    try:
        first = runtime.invoke({"input": "Weather in Paris?"})
        second = runtime.invoke({"input": "And tomorrow?"})
    finally:
        runtime.close()
    assert first["output"] == second["output"] == "Here is the forecast: It is sunny in Paris."
    assert {asked["model"] for asked in llm.asked} == {"local-model"}
    # Each task starts a new conversation: the second task's first request does not carry the first task.
    assert "Weather in Paris?" not in str(llm.asked[3]["messages"])


@AUTOGEN
@pytest.mark.parametrize(
    ("team", "message"),
    [
        ([], "configuration.team must be"),
        ({"agents": [{"name": "A"}, {"name": "A"}]}, "a name of its own"),
        ({"agents": [{"tools": ["os:system"]}]}, r"configuration\.team\.agents\[0\]\.tools\[0\]"),
    ],
)
def test_an_autogen_team_it_cannot_build_is_refused(team: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        adapter_for("autogen").load(_spec("autogen", "http://127.0.0.1:9/v1", team=team))


CREWAI = pytest.mark.skipif(importlib.util.find_spec("crewai") is None, reason="pip install -e '.[crewai]'")


@CREWAI
def test_a_crewai_crew_from_configuration_fills_its_tasks_from_the_payload(server) -> None:
    llm, url = server
    crew = {
        "agents": [
            {"role": "Forecaster", "goal": "Tell the weather.", "backstory": "A meteorologist.", "tools": [WEATHER]},
            {"role": "Writer", "goal": "Write it up.", "backstory": "A journalist."},
        ],
        "tasks": [
            {"description": "The weather in {city}.", "expected_output": "A forecast.", "agent": "Forecaster"},
            {"description": "A headline for {city}.", "expected_output": "A headline.", "agent": "Writer"},
        ],
    }
    runtime = adapter_for("crewai").load(_spec("crewai", url, crew=crew))
    try:
        results = [runtime.invoke({"city": city}) for city in ("Paris", "Oslo")]
    finally:
        runtime.close()
    assert [result["output"] for result in results] == ["Here is the forecast:"] * 2
    assert [result["tool_calls"] for result in results] == [[{"name": "get_weather", "args": {"city": "Paris"}}]] * 2
    # Three model requests a task (the tool call, the forecast, the headline): each task counts its own.
    assert [result["usage"]["total_tokens"] for result in results] == [3 * USAGE["total_tokens"]] * 2
    assert "The weather in Oslo." in str(llm.asked[3]["messages"]) and "Writer" in str(llm.asked[5]["messages"])


@CREWAI
@pytest.mark.parametrize(
    ("crew", "message"),
    [
        ({"agents": [], "tasks": []}, "configuration.crew must be"),
        ({"agents": [{"role": "A"}], "tasks": []}, "configuration.crew.tasks must be"),
        ({"agents": [{"role": "A"}], "tasks": [{"description": "x", "agent": "B"}]}, "'B' is not a role"),
        ({"agents": [{"role": "A", "tools": ["os:system"]}], "tasks": [{"description": "x"}]}, r"agents\[0\]\.tools"),
    ],
)
def test_a_crewai_crew_it_cannot_build_is_refused(crew: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        adapter_for("crewai").load(_spec("crewai", "http://127.0.0.1:9/v1", crew=crew))


@CREWAI
def test_a_named_crew_on_its_own_model_counts_each_tasks_tokens_once(server) -> None:
    llm, url = server
    spec = _spec("crewai", url, agent="tests.fixtures.crewai_agents:crew_on_its_own_model", own_llm_url=url, llm={})
    runtime = adapter_for("crewai").load(spec)
    try:
        with ThreadPoolExecutor(2) as pool:  # one crew: its tasks take turns
            results = list(pool.map(lambda n: runtime.invoke({"input": f"Weather, task {n}?"}), range(2)))
    finally:
        runtime.close()
    assert {asked["model"] for asked in llm.asked} == {"own-model"}
    # Three requests a task (tool call, forecast, headline) on one client both agents share: counted once.
    assert [result["usage"]["total_tokens"] for result in results] == [3 * USAGE["total_tokens"]] * 2
