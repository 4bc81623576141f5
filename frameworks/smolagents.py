"""The `smolagents` framework: runs a Hugging Face smolagents agent (the `smolagents` extra).

`{"agent": "package.module:agent"}` names a `MultiStepAgent` (a `ToolCallingAgent`, a `CodeAgent`, …) or a
function that takes the agent's configuration and returns one; or a declarative agent, `{"instructions":
"...", "tools": ["package.module:function"]}` (also as `{"agent": {...}}`), is built here as a
`ToolCallingAgent` (the model calls tools through the API's function calling; no code is generated or run).
A tool's docstring must describe its arguments (`Args:`), as smolagents requires. `configuration.llm
{base_url, api_key, model}` (the model defaulting to the agent's `model`) gives it an `OpenAIServerModel` on
that OpenAI-compatible server, replacing a named agent's own model. `configuration.max_steps` bounds its
steps (default: smolagents' 20). A task's input is `payload["input"]` (or `"prompt"`, or the payload as
JSON); the result is `{"output", "usage", "tool_calls"}`, `tool_calls` without the `final_answer` call
that ends every run. Each task is a new run (the agent's memory is reset); a named agent runs one task at a
time. smolagents is imported when the runtime is built, never before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from core.imports import import_object
from frameworks import AgentSpec
from frameworks._llm import (
    Provider,
    agent_source,
    arguments,
    plain,
    provider_of,
    require_model,
    task_input,
    usage,
)

FINAL_ANSWER = "final_answer"


class SmolagentsRuntime:
    """`build()` makes a new agent for each task (a declarative one); a named one is shared, one task at a time."""

    def __init__(self, build: Callable[[], Any] | None, shared: Any, max_steps: int | None) -> None:
        self._build = build
        self._shared = shared
        self._max_steps = max_steps
        self._lock = threading.Lock()

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        task = task_input(payload)
        if self._build is not None:
            result = self._build().run(task, reset=True, max_steps=self._max_steps, return_full_result=True)
        else:
            with self._lock:
                result = self._shared.run(task, reset=True, max_steps=self._max_steps, return_full_result=True)
        calls = [
            {"name": call["function"]["name"], "args": arguments(call["function"].get("arguments"))}
            for step in result.steps
            for call in step.get("tool_calls") or []
            if call["function"]["name"] != FINAL_ANSWER
        ]
        spent = result.token_usage
        return {
            "output": plain(result.output),
            "usage": usage(spent.input_tokens if spent else 0, spent.output_tokens if spent else 0),
            "tool_calls": calls,
        }

    def close(self) -> None:
        self._build = self._shared = None


class SmolagentsAdapter:
    name = "smolagents"
    requires: tuple[str, ...] = ("smolagents", "openai")
    extra = "smolagents"

    def load(self, spec: AgentSpec) -> SmolagentsRuntime:
        from smolagents import MultiStepAgent, ToolCallingAgent, tool
        from smolagents.monitoring import LogLevel

        path, declared = agent_source(spec)
        provider = provider_of(spec)
        max_steps = spec.configuration.get("max_steps")
        max_steps = int(max_steps) if max_steps is not None else None
        if path is not None:
            agent = import_object(path, spec.code_modules)
            if not isinstance(agent, MultiStepAgent) and callable(agent):
                agent = agent(spec.configuration)
            if not isinstance(agent, MultiStepAgent):
                raise ValueError(f"configuration.agent {path!r} is not a smolagents agent")
            if provider is not None:
                agent.model = _model(provider)
            return SmolagentsRuntime(None, agent, max_steps)
        assert declared is not None
        require_model(provider)
        assert provider is not None
        try:
            tools = [tool(function) for function in declared.tools]
        except Exception as exc:  # smolagents' own reason: a missing docstring, an argument it cannot describe
            raise ValueError(f"configuration.tools: {exc}") from exc
        model = _model(provider)

        def build() -> Any:
            return ToolCallingAgent(
                tools=tools,
                model=model,
                instructions=declared.instructions,
                name=None,
                verbosity_level=LogLevel.OFF,  # the result is the record, not the actor's stdout
            )

        return SmolagentsRuntime(build, None, max_steps)


def _model(provider: Provider) -> Any:
    from smolagents import OpenAIServerModel

    client: dict[str, Any] = {}
    if provider.max_retries is not None:
        client["max_retries"] = provider.max_retries
    if provider.timeout_s is not None:
        client["timeout"] = provider.timeout_s
    return OpenAIServerModel(
        model_id=provider.model, api_base=provider.base_url, api_key=provider.api_key, client_kwargs=client
    )
