"""The `camelai` framework: runs a CAMEL `ChatAgent` (the `camelai` extra, the `camel-ai` package; it cannot
share an environment with the `openai-agents` extra: docs/frameworks.md).

`{"agent": "package.module:agent"}` names a `camel.agents.ChatAgent` (or a function that takes the agent's
configuration and returns one); or a declarative agent, `{"instructions": "...", "tools":
["package.module:function"]}` (also as `{"agent": {...}}`), is built here with `FunctionTool`s.
`configuration.llm {base_url, api_key, model}` (the model defaulting to the agent's `model`) gives it an
OpenAI-compatible model backend on that server, replacing a named agent's own. Token counting for CAMEL's
context window is approximate (a character count) rather than tiktoken's, which downloads its encodings from
the internet on first use; the task's `usage` is what the server reports. A task is one `step` of the agent
with the task's input (`payload["input"]`, or `"prompt"`, or the payload as JSON); the result is
`{"output", "usage", "tool_calls"}`. Each task starts from a fresh conversation; a named agent runs one task
at a time. CAMEL is imported when the runtime is built, never before.
"""

from __future__ import annotations

import json
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


class CamelRuntime:
    """`build()` makes a new agent for each task (a declarative one); a named one is shared, one task at a time."""

    def __init__(self, build: Callable[[], Any] | None, shared: Any) -> None:
        self._build = build
        self._shared = shared
        self._lock = threading.Lock()

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        task = task_input(payload)
        if self._build is not None:
            response = self._build().step(task)
        else:
            with self._lock:
                self._shared.reset()
                response = self._shared.step(task)
        info = response.info or {}
        if not response.msgs and info.get("termination_reasons"):
            raise RuntimeError(f"CAMEL agent stopped: {', '.join(map(str, info['termination_reasons']))}")
        spent = info.get("usage") or {}
        calls = [{"name": record.tool_name, "args": arguments(record.args)} for record in info.get("tool_calls") or []]
        output = response.msgs[-1].content if response.msgs else None
        return {
            "output": plain(output),
            "usage": usage(spent.get("prompt_tokens"), spent.get("completion_tokens")),
            "tool_calls": calls,
        }

    def close(self) -> None:
        self._build = self._shared = None


class CamelAIAdapter:
    name = "camelai"
    requires: tuple[str, ...] = ("camel", "openai")
    extra = "camelai"
    # Extras it cannot be installed beside (pyproject.toml): FRAMEWORK_UNAVAILABLE says so.
    conflicts_with: tuple[str, ...] = ("openai-agents",)

    def load(self, spec: AgentSpec) -> CamelRuntime:
        from camel.agents import ChatAgent
        from camel.models import ModelManager
        from camel.toolkits import FunctionTool

        path, declared = agent_source(spec)
        provider = provider_of(spec)
        if path is not None:
            agent = import_object(path, spec.code_modules)
            if not isinstance(agent, ChatAgent) and callable(agent):
                agent = agent(spec.configuration)
            if not isinstance(agent, ChatAgent):
                raise ValueError(f"configuration.agent {path!r} is not a CAMEL ChatAgent")
            if provider is not None:
                agent.model_backend = ModelManager(_model(provider))
            return CamelRuntime(None, agent)
        assert declared is not None
        require_model(provider)
        assert provider is not None
        model = _model(provider)
        tools = [FunctionTool(function) for function in declared.tools]

        def build() -> Any:
            return ChatAgent(system_message=declared.instructions, model=model, tools=tools)

        return CamelRuntime(build, None)


def _model(provider: Provider) -> Any:
    from camel.models import ModelFactory
    from camel.types import ModelPlatformType

    options: dict[str, Any] = {"api_key": provider.api_key, "token_counter": _approximate_counter()}
    if provider.max_retries is not None:
        options["max_retries"] = provider.max_retries
    if provider.timeout_s is not None:
        options["timeout"] = provider.timeout_s
    if provider.base_url is None:
        return ModelFactory.create(model_platform=ModelPlatformType.OPENAI, model_type=provider.model, **options)
    return ModelFactory.create(
        model_platform=ModelPlatformType.OPENAI_COMPATIBLE_MODEL,
        model_type=provider.model,
        url=provider.base_url,
        **options,
    )


def _approximate_counter() -> Any:
    """A token counter that needs no download: four bytes of UTF-8 a token. Its ids pack those bytes (and
    their count), so that decoding gives the text back."""
    from camel.utils import BaseTokenCounter

    class ApproximateTokenCounter(BaseTokenCounter):
        def count_tokens_from_messages(self, messages: list[Any]) -> int:
            return len(json.dumps(messages, default=str).encode()) // 4 + 1

        def encode(self, text: str) -> list[int]:
            data = text.encode()
            return [int.from_bytes(data[i : i + 4], "big") << 3 | len(data[i : i + 4]) for i in range(0, len(data), 4)]

        def decode(self, token_ids: list[int]) -> str:
            return b"".join((i >> 3).to_bytes(i & 7, "big") for i in token_ids).decode(errors="ignore")

    return ApproximateTokenCounter()
