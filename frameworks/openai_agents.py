"""The `openai-agents` framework: runs an OpenAI Agents SDK agent (the `openai-agents` extra).

`{"agent": "package.module:agent"}` names an `agents.Agent` (or a function that takes the agent's
configuration and returns one); or a declarative agent, `{"instructions": "...", "tools":
["package.module:function"]}` (also as `{"agent": {...}}`), is built here with `function_tool`.
`configuration.llm {base_url, api_key, model}` (the model defaulting to the agent's `model`) runs it on the
Chat Completions API of any OpenAI-compatible server, for every agent of the run (handoffs too). Tracing is
off: nothing is sent to OpenAI's trace exporter. A task's input is `payload["input"]` (or `"prompt"`, or
the payload as JSON); the result is `{"output", "usage", "tool_calls"}`. `configuration.max_turns` bounds
the model calls of a task. The SDK is imported when the runtime is built, never before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from frameworks import AgentSpec
from frameworks._llm import (
    EventLoopThread,
    Provider,
    agent_source,
    arguments,
    imported_agent,
    plain,
    provider_of,
    require_model,
    task_input,
    usage,
)
from frameworks.context import TaskContext, ToolApprovalPending, current


class OpenAIAgentsRuntime:
    def __init__(self, agent: Any, model: Any, client: Any, max_turns: int | None) -> None:
        self._agent = agent
        self._model = model  # None: each agent's own
        self._client = client
        self._max_turns = max_turns
        self._loop = EventLoopThread("openai-agents")

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        from agents import ModelSettings, RunConfig, Runner

        # Usage is asked for: a streamed Chat Completions run reports none otherwise.
        config = RunConfig(model=self._model, tracing_disabled=True, model_settings=ModelSettings(include_usage=True))
        options: dict[str, Any] = {"run_config": config}
        if self._max_turns is not None:
            options["max_turns"] = self._max_turns
        context = current()
        if context is None:
            result = self._loop.run(Runner.run(self._agent, task_input(payload), **options))
        else:  # the model's text streams to the task's output as it arrives
            result = self._loop.run(self._streamed(task_input(payload), options, context))
        calls = []
        for item in result.new_items:
            if getattr(item, "type", None) != "tool_call_item":
                continue
            raw = item.raw_item
            name = raw.get("name") if isinstance(raw, dict) else getattr(raw, "name", None)
            args = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", None)
            calls.append({"name": name or getattr(raw, "type", "tool"), "args": arguments(args)})
        spent = result.context_wrapper.usage
        return {
            "output": plain(result.final_output),
            "usage": usage(spent.input_tokens, spent.output_tokens),
            "tool_calls": calls,
        }

    async def _streamed(self, prompt: str, options: dict[str, Any], context: TaskContext) -> Any:
        """The run, streamed: each text delta is a `text` output piece. A tool call held for a person
        cancels the run (the SDK's streamed run would wait on a tool that raised past its handlers)."""
        from agents import Runner

        result = Runner.run_streamed(self._agent, prompt, **options)
        loop = asyncio.get_running_loop()
        context.on_hold = lambda: loop.call_soon_threadsafe(result.cancel)
        async for event in result.stream_events():
            data = getattr(event, "data", None)
            text_delta = (
                event.type == "raw_response_event" and getattr(data, "type", None) == "response.output_text.delta"
            )
            if text_delta and data.delta:
                context.emit({"kind": "text", "text": data.delta})
        if context.held is not None:
            raise ToolApprovalPending(f"the call of {context.held['name']} waits for a person's approval")
        return result

    def close(self) -> None:
        self._loop.close(self._client.close if self._client is not None else None)


class OpenAIAgentsAdapter:
    name = "openai-agents"
    requires: tuple[str, ...] = ("agents", "openai")
    extra = "openai-agents"

    def load(self, spec: AgentSpec) -> OpenAIAgentsRuntime:
        from agents import Agent, function_tool

        path, declared = agent_source(spec)
        provider = provider_of(spec)
        model, client = _model(provider) if provider is not None else (None, None)
        if path is not None:
            agent = imported_agent(spec, path, Agent, "an OpenAI Agents SDK agent")
        else:
            assert declared is not None
            require_model(model)
            tools = [function_tool(tool) for tool in declared.tools]
            agent = Agent(name=declared.name, instructions=declared.instructions, tools=tools, model=model)
        max_turns = spec.configuration.get("max_turns")
        return OpenAIAgentsRuntime(agent, model, client, int(max_turns) if max_turns is not None else None)


def _model(provider: Provider) -> tuple[Any, Any]:
    """(the model, the client to close): a model name for the SDK's default provider (OpenAI's API), else
    a Chat Completions model on `base_url`."""
    if provider.base_url is None:
        return provider.model, None
    from agents import OpenAIChatCompletionsModel
    from openai import AsyncOpenAI

    options: dict[str, Any] = {"base_url": provider.base_url, "api_key": provider.api_key}
    if provider.max_retries is not None:
        options["max_retries"] = provider.max_retries
    if provider.timeout_s is not None:
        options["timeout"] = provider.timeout_s
    client = AsyncOpenAI(**options)
    return OpenAIChatCompletionsModel(model=provider.model, openai_client=client), client
