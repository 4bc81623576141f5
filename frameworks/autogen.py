"""The `autogen` framework: runs an AutoGen AgentChat agent or team (the `autogen` extra: `autogen-agentchat`
and `autogen-ext[openai]`, Microsoft's AutoGen 0.4+ API).

`{"agent": "package.module:agent"}` names a `ChatAgent` (an `AssistantAgent`, …) or a `Team`
(`RoundRobinGroupChat`, `SelectorGroupChat`, …), or a function that takes the agent's configuration and
returns one. Declarative forms, built here:
- one `AssistantAgent`: `{"instructions": "...", "tools": ["package.module:function"]}` (also as
  `{"agent": {...}}`);
- a round-robin team: `{"team": {"agents": [{"name", "instructions", "tools"}, ...], "max_turns": n,
  "termination": "TERMINATE"}}`; it stops after `max_turns` messages (default: one round) or when a
  message mentions `termination`.
`configuration.llm {base_url, api_key, model}` (the model defaulting to the agent's `model`) gives every
agent an `OpenAIChatCompletionClient` on that OpenAI-compatible server, replacing a named agent's or team's
own model client. A task's input is `payload["input"]` (or `"prompt"`, or the payload as JSON); the result
is `{"output", "usage", "tool_calls"}`: the last message's text, the tokens of every model request, the
function calls in order. Each task starts from a fresh conversation. AutoGen is imported when the runtime
is built, never before.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from core.imports import import_object
from frameworks import AgentSpec
from frameworks._llm import (
    Declared,
    EventLoopThread,
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
from frameworks.context import TaskContext, current


class AutoGenRuntime:
    """`build()` makes a new agent or team for each task (declarative forms); a named one is shared, so its
    tasks run one at a time, each after a reset."""

    def __init__(self, build: Callable[[], Any] | None, shared: Any, clients: list[Any]) -> None:
        self._build = build
        self._shared = shared
        self._clients = clients
        self._loop = EventLoopThread("autogen")
        self._lock: asyncio.Lock | None = None

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        context = current()
        run = self._loop.submit(self._run(task_input(payload), context))
        if context is not None:  # a tool call held for a person ends the run here (the task waits)
            context.on_hold = run.cancel
        return _result(run.result())

    async def _run(self, task: str, context: TaskContext | None) -> Any:
        if self._build is not None:
            return await _streamed(self._build(), task, context)
        if self._lock is None:
            self._lock = asyncio.Lock()  # on the runtime's loop
        async with self._lock:
            await _reset(self._shared)
            return await _streamed(self._shared, task, context)

    def close(self) -> None:
        async def cleanup() -> None:
            for client in self._clients:
                await client.close()

        self._loop.close(cleanup)


class AutoGenAdapter:
    name = "autogen"
    requires: tuple[str, ...] = ("autogen_agentchat", "autogen_ext", "openai")
    extra = "autogen"

    def load(self, spec: AgentSpec) -> AutoGenRuntime:
        from autogen_agentchat.base import ChatAgent, Team

        team = spec.configuration.get("team")
        members = _team_members(spec, team) if team is not None else []
        path, declared = agent_source(spec) if team is None else (None, None)
        provider = provider_of(spec)
        # Streamed usage for the agents built here, which stream; a named one may not (and then OpenAI's API
        # refuses `stream_options`).
        client = _client(provider, streamed=path is None) if provider is not None else None
        clients = [client] if client is not None else []
        if team is not None:
            require_model(client)
            max_turns = int(team.get("max_turns") or len(members))
            stop = team.get("termination")
            return AutoGenRuntime(lambda: _round_robin(members, client, max_turns, stop), None, clients)
        if path is not None:
            runner = import_object(path, spec.code_modules)
            if not isinstance(runner, ChatAgent | Team) and callable(runner):
                runner = runner(spec.configuration)
            if not isinstance(runner, ChatAgent | Team):
                raise ValueError(f"configuration.agent {path!r} is not an AutoGen agent or team")
            if client is not None:
                _use_model(runner, client)
            return AutoGenRuntime(None, runner, clients)
        assert declared is not None
        require_model(client)
        return AutoGenRuntime(lambda: _assistant(declared, client), None, clients)


def _client(provider: Provider, *, streamed: bool) -> Any:
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    options: dict[str, Any] = {"model": provider.model}
    if streamed:  # usage is asked for: a streamed completion reports none otherwise
        options["stream_options"] = {"include_usage": True}
    if provider.base_url is not None:
        # Any model on any server: AutoGen asks what it can do only for names it does not know.
        options |= {
            "base_url": provider.base_url,
            "api_key": provider.api_key,
            "model_info": {
                "vision": False,
                "function_calling": True,
                "json_output": True,
                "structured_output": True,
                "family": "unknown",
            },
        }
    if provider.max_retries is not None:
        options["max_retries"] = provider.max_retries
    if provider.timeout_s is not None:
        options["timeout"] = provider.timeout_s
    return OpenAIChatCompletionClient(**options)


async def _streamed(runner: Any, task: str, context: TaskContext | None) -> Any:
    """The agent's or team's run (its `TaskResult`); in a task, streamed: the model's text chunks (an agent
    that streams its model client: the declarative ones) are `text` output pieces as they arrive."""
    from autogen_agentchat.base import TaskResult
    from autogen_agentchat.messages import ModelClientStreamingChunkEvent

    if context is None:
        return await runner.run(task=task)
    result = None
    async for item in runner.run_stream(task=task):
        if isinstance(item, ModelClientStreamingChunkEvent) and item.content:
            context.emit({"kind": "text", "text": item.content})
        elif isinstance(item, TaskResult):
            result = item
    return result


def _assistant(declared: Declared, client: Any) -> Any:
    from autogen_agentchat.agents import AssistantAgent

    return AssistantAgent(
        _identifier(declared.name),
        model_client=client,
        tools=declared.tools,
        system_message=declared.instructions,
        # The model answers after its tools ran, rather than the tools' output being the answer.
        reflect_on_tool_use=bool(declared.tools),
        model_client_stream=True,  # its text reaches the task's output as it arrives
    )


def _team_members(spec: AgentSpec, team: Any) -> list[Declared]:
    if not isinstance(team, dict) or not isinstance(team.get("agents"), list) or not team["agents"]:
        raise ValueError("configuration.team must be {agents: [{name, instructions, tools}, ...], max_turns}")
    members = [
        declared_agent(spec, member, f"configuration.team.agents[{index}]")
        for index, member in enumerate(team["agents"])
    ]
    names = [_identifier(member.name) for member in members]
    if len(set(names)) != len(names):
        raise ValueError("configuration.team.agents: each agent needs a name of its own")
    return members


def _round_robin(members: list[Declared], client: Any, max_turns: int, stop: Any) -> Any:
    from autogen_agentchat.conditions import TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat

    termination = TextMentionTermination(str(stop)) if stop else None
    participants = [_assistant(member, client) for member in members]
    return RoundRobinGroupChat(participants, termination_condition=termination, max_turns=max_turns)


def _use_model(runner: Any, client: Any) -> None:
    """The configured model client for a named agent, a team's members and a selector team's own choice."""
    for holder in [runner, *getattr(runner, "_participants", [])]:
        if hasattr(holder, "_model_client"):
            holder._model_client = client


async def _reset(runner: Any) -> None:
    from autogen_agentchat.base import Team
    from autogen_core import CancellationToken

    if isinstance(runner, Team):
        await runner.reset()
    else:
        await runner.on_reset(CancellationToken())


def _identifier(name: str) -> str:
    """AutoGen wants agent names that are Python identifiers."""
    ident = re.sub(r"\W", "_", name) or "agent"
    return ident if ident.isidentifier() else f"agent_{ident}"


def _result(result: Any) -> dict[str, Any]:
    from autogen_agentchat.messages import BaseChatMessage, ToolCallRequestEvent

    calls, given, taken = [], 0, 0
    for message in result.messages:
        spent = getattr(message, "models_usage", None)
        if spent is not None:
            given, taken = given + spent.prompt_tokens, taken + spent.completion_tokens
        if isinstance(message, ToolCallRequestEvent):
            calls += [{"name": call.name, "args": arguments(call.arguments)} for call in message.content]
    chat = [message for message in result.messages if isinstance(message, BaseChatMessage)]
    output: Any = None
    if chat:
        last = chat[-1]
        content = getattr(last, "content", None)
        output = content if isinstance(content, str) else plain(content) if content is not None else last.to_text()
    return {"output": output, "usage": usage(given, taken), "tool_calls": calls}
