"""The `native` framework: our own runtime. An agent's work is a Python handler named in its configuration
(`{"handler": "package.module:function"}`, sync or async, given the task input, returning a dict).
The workflow engine (workflows and executions) builds on this runtime.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from core.imports import import_object
from frameworks import AgentSpec


class NativeRuntime:
    def __init__(self, handler: Callable[..., Any] | None) -> None:
        self._handler = handler

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self._handler is None:
            raise ValueError("this agent has no 'handler' in its configuration; it only runs workflows")
        result = self._handler(payload)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return result if isinstance(result, dict) else {"result": result}

    def close(self) -> None:
        self._handler = None


async def _await(awaitable: Any) -> Any:
    return await awaitable


class NativeAdapter:
    name = "native"
    requires: tuple[str, ...] = ()
    extra = None

    def load(self, spec: AgentSpec) -> NativeRuntime:
        path = spec.configuration.get("handler")
        if path is None:
            return NativeRuntime(None)
        handler = import_object(path, spec.code_modules)
        if not callable(handler):
            raise ValueError(f"configuration.handler {path!r} is not callable")
        return NativeRuntime(handler)
