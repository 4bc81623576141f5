"""The `langgraph` framework: runs a real LangGraph graph named by import path in the agent's configuration.

`{"graph": "package.module:graph"}` names a compiled graph, a `StateGraph` (compiled here), or a function
that takes the agent's configuration and returns either. A task's input is the graph's input state;
messages in the final state come back as `{"type", "content"}` dicts.
"""

from __future__ import annotations

from typing import Any

from core.imports import import_object
from frameworks import AgentSpec


class LangGraphRuntime:
    def __init__(self, graph: Any) -> None:
        self._graph = graph

    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        state = self._graph.invoke(payload)
        return _plain(state) if isinstance(state, dict) else {"result": _plain(state)}

    def close(self) -> None:
        self._graph = None


class LangGraphAdapter:
    name = "langgraph"
    requires: tuple[str, ...] = ("langgraph", "langchain_core")
    extra = "langgraph"

    def load(self, spec: AgentSpec) -> LangGraphRuntime:
        path = spec.configuration.get("graph")
        if not path:
            raise ValueError("configuration.graph is required: the import path of a LangGraph graph")
        graph = import_object(path, spec.code_modules)
        if not hasattr(graph, "invoke") and not hasattr(graph, "compile") and callable(graph):
            graph = graph(spec.configuration)
        if not hasattr(graph, "invoke") and hasattr(graph, "compile"):
            graph = graph.compile()
        if not hasattr(graph, "invoke"):
            raise ValueError(f"configuration.graph {path!r} is not a LangGraph graph")
        return LangGraphRuntime(graph)


def _plain(value: Any) -> Any:
    """LangChain messages and nested containers as JSON-ready values."""
    from langchain_core.messages import BaseMessage

    if isinstance(value, BaseMessage):
        return {"type": value.type, "content": value.content}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
