"""The `pydantic-ai` framework: runs a Pydantic AI agent (the `pydantic-ai` extra).

`{"agent": "package.module:agent"}` names an `Agent` (or a function that takes the agent's configuration
and returns one); or a declarative agent, `{"instructions": "...", "tools": ["package.module:function"]}`
(also as `{"agent": {...}}`), is built here. `configuration.llm {base_url, api_key, model}` (the model
defaulting to the agent's `model`) points it at any OpenAI-compatible server, overriding a named agent's own
model. A task's input is `payload["input"]` (or `"prompt"`, or the payload as JSON); the result is
`{"output", "usage", "tool_calls"}`. Pydantic AI is imported when the runtime is built, never before.
"""

from __future__ import annotations

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
from frameworks.context import TaskContext, current


class PydanticAIRuntime:
    def __init__(self, agent: Any, model: Any, client: Any) -> None:
        self._agent = agent
        self._model = model  # None: the agent's own
        self._client = client
        self._loop = EventLoopThread("pydantic-ai")

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        from pydantic_ai.messages import ModelResponse, ToolCallPart

        options: dict[str, Any] = {"model": self._model}
        context = current()
        if context is not None:  # the model's text streams to the task's output as it arrives
            options["event_stream_handler"] = _streamer(context)
        result = self._loop.run(self._agent.run(task_input(payload), **options))
        output_tool = getattr(result, "_output_tool_name", None)
        calls = [
            {"name": part.tool_name, "args": arguments(part.args)}
            for message in result.new_messages()
            if isinstance(message, ModelResponse)
            for part in message.parts
            if isinstance(part, ToolCallPart) and part.tool_name != output_tool
        ]
        spent = result.usage
        if not hasattr(spent, "input_tokens"):  # a method before Pydantic AI 2
            spent = spent()
        return {
            "output": plain(result.output),
            "usage": usage(spent.input_tokens, spent.output_tokens),
            "tool_calls": calls,
        }

    def close(self) -> None:
        self._loop.close(self._client.close if self._client is not None else None)


class PydanticAIAdapter:
    name = "pydantic-ai"
    requires: tuple[str, ...] = ("pydantic_ai", "openai")
    extra = "pydantic-ai"

    def load(self, spec: AgentSpec) -> PydanticAIRuntime:
        from pydantic_ai import Agent
        from pydantic_ai.agent import AbstractAgent

        path, declared = agent_source(spec)
        provider = provider_of(spec)
        model, client = _model(provider) if provider is not None else (None, None)
        if path is not None:
            agent = imported_agent(spec, path, AbstractAgent, "a Pydantic AI agent")
        else:
            assert declared is not None
            require_model(model)
            agent = Agent(model, instructions=declared.instructions, tools=declared.tools, name=declared.name)
        return PydanticAIRuntime(agent, model, client)


def _model(provider: Provider) -> tuple[Any, Any]:
    """(the model, the client to close): a model name as Pydantic AI reads it (`openai:gpt-4o`, …) for the
    default endpoints, else an OpenAI-compatible chat model on `base_url`."""
    if provider.base_url is None:
        return provider.model, None
    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    options: dict[str, Any] = {"base_url": provider.base_url, "api_key": provider.api_key}
    if provider.max_retries is not None:
        options["max_retries"] = provider.max_retries
    if provider.timeout_s is not None:
        options["timeout"] = provider.timeout_s
    client = AsyncOpenAI(**options)
    return OpenAIChatModel(provider.model, provider=OpenAIProvider(openai_client=client)), client


def _streamer(context: TaskContext) -> Any:
    """Pydantic AI's `event_stream_handler`: each piece of text the model streams, as a `text` output piece."""
    from pydantic_ai.messages import PartDeltaEvent, PartStartEvent, TextPart, TextPartDelta

    async def handle(_: Any, events: Any) -> None:
        async for event in events:
            if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart) and event.part.content:
                context.emit({"kind": "text", "text": event.part.content})
            elif (
                isinstance(event, PartDeltaEvent)
                and isinstance(event.delta, TextPartDelta)
                and event.delta.content_delta
            ):
                context.emit({"kind": "text", "text": event.delta.content_delta})

    return handle
