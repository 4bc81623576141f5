"""What the LLM agent frameworks' adapters (`pydantic-ai`, `openai-agents`, `autogen`, `smolagents`, `crewai`,
`camelai`) share: the task's input, the provider settings of `configuration.llm`, the declarative agent form,
the event loop an async framework runs on, and its result as JSON-ready values. No framework is imported
here."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import inspect
import json
import socket
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from core.imports import import_object
from core.net import PrivateAddress, resolve_public
from frameworks import AgentSpec
from frameworks.context import approval_policy, current

T = TypeVar("T")


def task_input(payload: Any) -> str:
    """The prompt of a task: `payload["input"]`, else `payload["prompt"]`, else the payload as JSON."""
    if isinstance(payload, dict):
        for key in ("input", "prompt"):
            if payload.get(key) is not None:
                value = payload[key]
                return value if isinstance(value, str) else json.dumps(value, default=str)
    return payload if isinstance(payload, str) else json.dumps(payload, default=str)


@dataclass(frozen=True, slots=True)
class Provider:
    """An OpenAI-compatible endpoint and model. `base_url` None: the framework's default (OpenAI's API)."""

    model: str
    base_url: str | None = None
    api_key: str | None = None
    max_retries: int | None = None
    timeout_s: float | None = None


def provider_of(spec: AgentSpec) -> Provider | None:
    """The provider of `configuration.llm {base_url, api_key, model, max_retries, timeout_s}` (the model
    defaulting to the agent's `model`), else of the tenant's or the platform's settings (`spec.default_llm`);
    None when none names a model nor an endpoint. A settings' API key goes only to that settings' endpoint,
    never to one the agent's configuration names. A `base_url` on a private address is refused unless
    allow-listed (ORCHESTRATOR_HTTP_ALLOWED_HOSTS)."""
    llm = spec.configuration.get("llm") or {}
    if not isinstance(llm, dict):
        raise ValueError("configuration.llm must be an object {base_url, api_key, model}")
    defaults = spec.default_llm or {}
    base_url = llm.get("base_url")
    api_key = llm.get("api_key")
    if base_url is None and defaults.get("base_url"):
        base_url, api_key = defaults["base_url"], api_key or defaults.get("api_key")
    model = llm.get("model") or spec.model or (defaults.get("model") if base_url == defaults.get("base_url") else None)
    if not model and not base_url:
        return None
    if not model:
        raise ValueError("configuration.llm.model (or the agent's model) is required with configuration.llm.base_url")
    if base_url is not None:
        check_base_url(str(base_url), spec.http_allowed)
    if base_url is not None and not api_key:
        # Never the process's OPENAI_API_KEY: it must not be sent to an endpoint the agent's owner chose.
        api_key = "unused"
    return Provider(
        model=str(model),
        base_url=str(base_url) if base_url is not None else None,
        api_key=str(api_key) if api_key else None,
        max_retries=int(llm["max_retries"]) if llm.get("max_retries") is not None else None,
        timeout_s=float(llm["timeout_s"]) if llm.get("timeout_s") is not None else None,
    )


def check_base_url(base_url: str, allowed: tuple[str, ...]) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"configuration.llm.base_url: not an http(s) URL: {base_url!r}")
    try:
        resolve_public(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), allowed)
    except PrivateAddress as exc:
        raise ValueError(f"configuration.llm.base_url: {exc}") from None
    except socket.gaierror as exc:
        raise ValueError(f"configuration.llm.base_url: cannot resolve {parts.hostname}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Declared:
    """A declarative agent: `{"instructions", "tools": ["pkg.mod:function", ...], "name"}`."""

    instructions: str | None
    tools: list[Callable[..., Any]]
    name: str


def agent_source(spec: AgentSpec) -> tuple[str | None, Declared | None]:
    """(`configuration.agent` as an import path, None) or (None, the declarative agent): `agent` as an
    object, or `instructions`/`tools` at the top of the configuration. ValueError if it names neither."""
    configuration = spec.configuration
    agent = configuration.get("agent")
    if isinstance(agent, str):
        if approval_policy(spec.configuration).tools:
            raise ValueError(
                "configuration.tool_approval gates the tools of a declarative agent (tools: [import paths]); "
                "an agent named by import path calls its own tools, which the platform cannot hold for a person"
            )
        return agent, None
    if agent is not None and not isinstance(agent, dict):
        raise ValueError("configuration.agent must be an import path 'package.module:agent' or an object")
    declared = agent if isinstance(agent, dict) else configuration
    where = "configuration.agent" if isinstance(agent, dict) else "configuration"
    if declared.get("instructions") is None and not declared.get("tools") and agent is None:
        raise ValueError(
            "configuration.agent is required: the import path of an agent, or {instructions, tools: [paths]}"
        )
    return None, declared_agent(spec, declared, where)


def declared_agent(spec: AgentSpec, declared: Any, where: str) -> Declared:
    """One declarative agent `{instructions, tools, name}` found at `where` in the configuration, its
    tools imported (from the allowed modules only)."""
    if not isinstance(declared, dict):
        raise ValueError(f"{where} must be an object {{name, instructions, tools}}")
    paths = declared.get("tools") or []
    if not isinstance(paths, list):
        raise ValueError(f"{where}.tools must be a list of import paths 'package.module:function'")
    gated = approval_policy(spec.configuration).tools
    tools = []
    for index, path in enumerate(paths):
        try:
            tool = import_object(path, spec.code_modules)
        except ValueError as exc:
            raise ValueError(f"{where}.tools[{index}]: {exc}") from exc
        if not callable(tool):
            raise ValueError(f"{where}.tools[{index}] {path!r} is not callable")
        tools.append(observed(tool, needs_approval=gated == "*" or _tool_name(tool) in gated))
    instructions = declared.get("instructions")
    return Declared(
        instructions=str(instructions) if instructions is not None else None,
        tools=tools,
        name=str(declared.get("name") or spec.name),
    )


class EventLoopThread:
    """One event loop on a thread of its own, for the runtime's lifetime: the framework's async clients
    keep their connections across tasks, and `invoke` works from any thread (the actor runs tasks on
    several), whether or not that thread has a loop running."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """`coroutine` started on the loop; its future, which may be cancelled from any thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def close(self, cleanup: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> None:
        """Run `cleanup()` (closing the framework's client) on the loop, then stop it. Idempotent."""
        if self._loop.is_closed() or not self._thread.is_alive():
            return
        if cleanup is not None:
            with contextlib.suppress(Exception):  # best effort: the process may be about to exit
                self.run(cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


def imported_agent(spec: AgentSpec, path: str, kind: type, what: str) -> Any:
    """The agent `configuration.agent` names: the object itself, or what a factory of that name returns for
    the agent's configuration; ValueError unless it is a `kind`."""
    agent = import_object(path, spec.code_modules)
    if not isinstance(agent, kind) and callable(agent):
        agent = agent(spec.configuration)
    if not isinstance(agent, kind):
        raise ValueError(f"configuration.agent {path!r} is not {what}")
    return agent


def require_model(model: Any) -> None:
    """A declarative agent has no model of its own."""
    if model is None:
        raise ValueError(
            "a declarative agent needs a model: configuration.llm {base_url, api_key, model} or the agent's model"
        )


def plain(value: Any) -> Any:
    """A framework's output as a JSON-ready value: pydantic models and dataclasses as dicts."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(item) for item in value]
    return str(value)


def arguments(raw: Any) -> Any:
    """A tool call's arguments: the JSON object the model sent, parsed when it parses."""
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            return raw
    return plain(raw)


def usage(input_tokens: int | None, output_tokens: int | None) -> dict[str, int]:
    given, taken = int(input_tokens or 0), int(output_tokens or 0)
    return {"input_tokens": given, "output_tokens": taken, "total_tokens": given + taken}


def _tool_name(tool: Callable[..., Any]) -> str:
    return getattr(tool, "__name__", type(tool).__name__)


def observed(tool: Callable[..., Any], *, needs_approval: bool) -> Callable[..., Any]:
    """`tool` as the framework calls it: each call is an output piece of the current task (`tool_call`, then
    `tool_result`), and with `needs_approval` it runs only once a person approved that call. The wrapper
    keeps the tool's name, signature and docstring (`functools.wraps`), from which frameworks build its
    schema."""
    name = _tool_name(tool)
    signature = inspect.signature(tool)

    def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """None to run the tool, or the answer the model gets instead (a rejection)."""
        try:
            call = plain(dict(signature.bind(*args, **kwargs).arguments))
        except TypeError:  # the framework's own error message comes from calling the tool itself
            call = {}
        context = current()
        if context is not None:
            context.emit({"kind": "tool_call", "name": name, "args": call})
        if not needs_approval:
            return None
        if context is None:
            raise RuntimeError(
                f"{name} needs a person's approval, which only a task of a deployed agent can ask for; it did not run"
            )
        if context.held is not None:
            raise context.hold(name, call)
        decision = context.decision(name, call)
        if decision is None:
            raise context.hold(name, call)
        if decision.get("approved"):
            return None
        why = f": {decision['reason']}" if decision.get("reason") else ""
        refusal = (
            f"A person rejected this call of {name}{why}. It was not run; do not call it again with these arguments."
        )
        context.emit({"kind": "tool_result", "name": name, "result": refusal})
        return refusal

    def after(result: Any) -> Any:
        context = current()
        if context is not None:
            context.emit({"kind": "tool_result", "name": name, "result": plain(result)})
        return result

    if inspect.iscoroutinefunction(tool):

        @functools.wraps(tool)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            refusal = before(args, kwargs)
            return refusal if refusal is not None else after(await tool(*args, **kwargs))

        return call_async

    @functools.wraps(tool)
    def call(*args: Any, **kwargs: Any) -> Any:
        refusal = before(args, kwargs)
        return refusal if refusal is not None else after(tool(*args, **kwargs))

    return call
