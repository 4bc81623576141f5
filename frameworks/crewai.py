"""The `crewai` framework: runs a CrewAI crew (the `crewai` extra; CrewAI cannot share an environment with the
`pydantic-ai` and `openai-agents` extras: docs/frameworks.md).

`{"agent": "package.module:crew"}` names a `Crew` (or a function that takes the agent's configuration and
returns one). Declarative forms, built here:
- a crew: `{"crew": {"agents": [{"role", "goal", "backstory", "tools"}], "tasks": [{"description",
  "expected_output", "agent": "<role>"}]}}`, run in sequence; a task's `agent` defaults to the first;
- one agent with one task: `{"instructions": "...", "tools": ["package.module:function"]}` (also as
  `{"agent": {...}}`): the instructions are the agent's backstory, the task's input its description.
`configuration.llm {base_url, api_key, model}` (the model defaulting to the agent's `model`) gives every
agent of the crew an OpenAI-compatible model on that server (CrewAI's native OpenAI client, not LiteLLM),
replacing a named crew's own. A task's payload is the crew's `inputs`, which fill the `{placeholders}` of
its tasks' descriptions; `{input}` is always there: `payload["input"]` (or `"prompt"`, or the payload as
JSON). The result is `{"output", "usage", "tool_calls"}`: the crew's last output, its token usage, the
tools its agents called. A task runs on a crew no other task is using (a copy of a named one), so tasks can
run side by side; a named crew without `configuration.llm` runs its tasks one at a time. CrewAI's telemetry
and tracing are turned off in the actor's process. CrewAI is imported when the runtime is built, never
before.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from core.imports import import_object
from frameworks import AgentSpec
from frameworks._llm import (
    Declared,
    Provider,
    agent_source,
    arguments,
    declared_agent,
    plain,
    provider_of,
    require_model,
    task_input,
    usage,
)

# Nothing leaves the actor for CrewAI's own collector (crewai_core/telemetry.py reads these).
GOAL = "Complete the task you are given."
QUIET = {"CREWAI_DISABLE_TELEMETRY": "true", "CREWAI_DISABLE_TRACKING": "true", "CREWAI_TRACING_ENABLED": "false"}


class CrewAIRuntime:
    """Crews are made by `make()` as tasks need them and kept for later tasks: a crew runs one task at a time
    (CrewAI's objects hold a run's state), and making one costs ~40 ms, mostly its model clients' HTTP set-up.
    With `pool` False (a named crew on its own models, which every copy would share) there is one crew, and
    its tasks run one at a time. A task's usage is what its run added to the crew's model clients' counts."""

    def __init__(self, make: Callable[[], Any], first: Any, *, pool: bool = True) -> None:
        self._make = make
        self._idle: list[Any] = [first]
        self._pool = pool
        self._lock = threading.Lock()
        self._one_at_a_time = threading.Lock()

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        if not self._pool:
            with self._one_at_a_time:
                return self._run(self._idle[0], payload)
        with self._lock:
            crew = self._idle.pop() if self._idle else self._make()
        try:
            return self._run(crew, payload)
        finally:
            with self._lock:
                self._idle.append(crew)

    def _run(self, crew: Any, payload: dict[str, Any]) -> dict[str, Any]:
        inputs = dict(payload) if isinstance(payload, dict) else {}
        inputs["input"] = task_input(payload)
        before = _spent(crew)
        result = crew.kickoff(inputs=inputs)
        after = _spent(crew)
        calls = [
            {"name": call["function"]["name"], "args": arguments(call["function"].get("arguments"))}
            for task in result.tasks_output
            for message in task.messages or []
            if message.get("role") == "assistant"
            for call in message.get("tool_calls") or []
        ]
        output = result.pydantic or result.json_dict or result.raw
        return {
            "output": plain(output),
            "usage": usage(after[0] - before[0], after[1] - before[1]),
            "tool_calls": calls,
        }

    def close(self) -> None:
        with self._lock:
            self._make = _closed
            if self._pool:
                self._idle.clear()


def _spent(crew: Any) -> tuple[int, int]:
    """(prompt, completion) tokens so far of the crew's model clients, each counted once: CrewAI's own sum
    (`token_usage`) counts a client once per agent that shares it."""
    clients = {id(llm): llm for llm in [*(agent.llm for agent in crew.agents), crew.manager_llm] if llm is not None}
    given = taken = 0
    for llm in clients.values():
        summary = llm.get_token_usage_summary() if hasattr(llm, "get_token_usage_summary") else None
        if summary is not None:
            given, taken = given + summary.prompt_tokens, taken + summary.completion_tokens
    return given, taken


def _closed() -> Any:
    raise RuntimeError("this runtime is closed")


class CrewAIAdapter:
    name = "crewai"
    requires: tuple[str, ...] = ("crewai",)
    extra = "crewai"
    # Extras it cannot be installed beside (pyproject.toml): FRAMEWORK_UNAVAILABLE says so.
    conflicts_with: tuple[str, ...] = ("pydantic-ai", "openai-agents")

    def load(self, spec: AgentSpec) -> CrewAIRuntime:
        for key, value in QUIET.items():
            os.environ.setdefault(key, value)
        from crewai import Crew

        crew = spec.configuration.get("crew")
        members, tasks = _crew_of(spec, crew) if crew is not None else ([], [])
        path, declared = agent_source(spec) if crew is None else (None, None)
        provider = provider_of(spec)
        if path is not None:
            named = import_object(path, spec.code_modules)
            if not isinstance(named, Crew) and callable(named):
                named = named(spec.configuration)
            if not isinstance(named, Crew):
                raise ValueError(f"configuration.agent {path!r} is not a CrewAI crew")
            if provider is None:  # copies would share its model clients, and so their token counts
                return CrewAIRuntime(_closed, named, pool=False)
            return CrewAIRuntime(lambda: _copy(named, provider), _copy(named, provider))
        require_model(provider)
        assert provider is not None
        if declared is not None:
            members = [(declared, GOAL)]
            tasks = [{"description": "{input}", "expected_output": "The answer to the task.", "agent": None}]
        first = _build(members, tasks, provider)  # a crew it cannot build is refused now, not at its first task
        return CrewAIRuntime(lambda: _build(members, tasks, provider), first)


Member = tuple[Declared, str]  # a crew's agent and its goal


def _crew_of(spec: AgentSpec, crew: Any) -> tuple[list[Member], list[dict[str, Any]]]:
    if not isinstance(crew, dict) or not isinstance(crew.get("agents"), list) or not crew["agents"]:
        raise ValueError("configuration.crew must be {agents: [{role, goal, backstory, tools}], tasks: [...]}")
    members = []
    for index, member in enumerate(crew["agents"]):
        where = f"configuration.crew.agents[{index}]"
        if not isinstance(member, dict) or not (member.get("role") or member.get("name")):
            raise ValueError(f"{where} must be an object {{role, goal, backstory, tools}}")
        named = {**member, "name": member.get("role") or member["name"]}
        named.setdefault("instructions", member.get("backstory"))
        members.append((declared_agent(spec, named, where), str(member.get("goal") or GOAL)))
    tasks = crew.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise ValueError("configuration.crew.tasks must be a list of {description, expected_output, agent}")
    roles = {member.name for member, _ in members}
    for index, task in enumerate(tasks):
        if not isinstance(task, dict) or not task.get("description"):
            raise ValueError(f"configuration.crew.tasks[{index}] needs a description")
        if task.get("agent") is not None and task["agent"] not in roles:
            raise ValueError(f"configuration.crew.tasks[{index}].agent {task['agent']!r} is not a role of the crew")
    return members, tasks


def _llm(provider: Provider) -> Any:
    from crewai import LLM

    options: dict[str, Any] = {"model": provider.model}
    if provider.base_url is not None:
        # CrewAI's own OpenAI client on any OpenAI-compatible server, whatever the model's name.
        options |= {"custom_openai": True, "base_url": provider.base_url, "api_key": provider.api_key}
    if provider.max_retries is not None:
        options["max_retries"] = provider.max_retries
    if provider.timeout_s is not None:
        options["timeout"] = provider.timeout_s
    return LLM(**options)


def _build(members: list[Member], tasks: list[dict[str, Any]], provider: Provider) -> Any:
    """A new crew, each agent with a model client of its own (CrewAI adds up its agents' clients' counts)."""
    from crewai import Agent, Crew, Task
    from crewai.tools import tool

    agents = {
        member.name: Agent(
            role=member.name,
            goal=goal,
            backstory=member.instructions or "",
            tools=[tool(function) for function in member.tools],
            llm=_llm(provider),  # one per agent: CrewAI adds up the agents' clients' token counts
            verbose=False,
            **_retries(provider),
        )
        for member, goal in members
    }
    first = next(iter(agents.values()))
    work = [
        Task(
            description=str(task["description"]),
            expected_output=str(task.get("expected_output") or "The answer to the task."),
            agent=agents[task["agent"]] if task.get("agent") else first,
        )
        for task in tasks
    ]
    return Crew(agents=list(agents.values()), tasks=work, verbose=False)


def _copy(crew: Any, provider: Provider) -> Any:
    """A named crew's copy, on the configured model: a client of its own for each agent."""
    copy = crew.copy()
    for agent in copy.agents:
        agent.llm = _llm(provider)
        for key, value in _retries(provider).items():
            setattr(agent, key, value)
    return copy


def _retries(provider: Provider) -> dict[str, int]:
    """`llm.max_retries` bounds CrewAI's own retries of an agent's failed step too (else 2 more tries of
    each): a model that fails fails the task once, as with the other frameworks."""
    return {"max_retry_limit": provider.max_retries} if provider.max_retries is not None else {}
