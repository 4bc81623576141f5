"""Python-defined workflows: steps that are your own functions, defined anywhere (a notebook cell too),
shipped with the submission.

    wf = Workflow("clean-and-score")
    wf.step(load)                          # each step takes the state and returns a mapping merged into it
    wf.approval("Score these rows?", input_schema={"type": "object", "properties": {"threshold": {"type": "number"}}})
    wf.map(score, items="{{ state.rows }}", output_key="scores")
    wf.step(summarize, when="state.rows")  # a condition on the edge into this step
    run = client.workflows.submit(wf, input={"path": "data.csv"})
    run.wait()

`submit` pickles the functions by value with cloudpickle (functions of `__main__` always; other modules'
with `Workflow(by_value=[module])`), names the bundle by its SHA-256, uploads it only if the platform does
not have it yet, and runs the graph. The platform stores the bytes as sent and unpickles them only in a run
actor of that run (Python major.minor must match the cluster's).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

BUNDLE_PLACEHOLDER = "<bundle>"


class Workflow:
    def __init__(self, name: str, *, description: str | None = None, by_value: list[ModuleType] | None = None) -> None:
        self.name = name
        self.description = description
        self._by_value = list(by_value or [])
        self._nodes: list[dict[str, Any]] = [{"id": "input", "type": "input"}]
        self._edges: list[dict[str, Any]] = []
        self._functions: dict[str, Callable[..., Any]] = {}
        self._last = "input"

    # --- building ------------------------------------------------------------------------------------

    def step(
        self,
        function: Callable[..., Any],
        *,
        id: str | None = None,
        after: str | list[str] | None = None,
        when: str | None = None,
        retry_count: int | None = None,
        timeout_s: float | None = None,
    ) -> Workflow:
        """A step running `function(state[, context])`; its mapping is merged into the state."""
        name = self._ship(function)
        node: dict[str, Any] = {"id": self._id(id or function.__name__), "type": "python"}
        node["config"] = {"bundle": BUNDLE_PLACEHOLDER, "function": name}
        if retry_count is not None:
            node["retry_count"] = retry_count
        if timeout_s is not None:
            node["timeout_s"] = timeout_s
        return self._add(node, after, when)

    def approval(
        self,
        reason: str,
        *,
        id: str | None = None,
        description: str | None = None,
        input_schema: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        after: str | list[str] | None = None,
        when: str | None = None,
    ) -> Workflow:
        """A person decides before the run goes on; the run waits holding no process. The decision (and its
        `input`) is in the state under the step's id."""
        config: dict[str, Any] = {"reason": reason}
        for key, value in (("description", description), ("input_schema", input_schema), ("timeout_s", timeout_s)):
            if value is not None:
                config[key] = value
        return self._add({"id": self._id(id or "approval"), "type": "approval", "config": config}, after, when)

    def map(
        self,
        function: Callable[[Any], Any],
        items: str | list[Any],
        *,
        id: str | None = None,
        output_key: str | None = None,
        max_parallel: int = 4,
        after: str | list[str] | None = None,
        when: str | None = None,
    ) -> Workflow:
        """`function(item)` for each of `items` (a list, or a template such as "{{ state.rows }}"), in
        parallel threads of the run's process; the results, in order, go under `output_key`."""
        name = self._ship(function)
        node_id = self._id(id or function.__name__)
        config = {
            "bundle": BUNDLE_PLACEHOLDER,
            "function": name,
            "items": items,
            "max_parallel": max_parallel,
            "output_key": output_key or node_id,
        }
        return self._add({"id": node_id, "type": "map", "config": config}, after, when)

    # --- what is shipped ------------------------------------------------------------------------------

    def bundle(self) -> tuple[bytes, str, list[str]]:
        """(the pickled functions, their SHA-256, their names). The same code gives the same bytes, so a
        repeat submission finds its bundle already on the platform."""
        try:
            import cloudpickle
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Python-defined workflows need cloudpickle: pip install 'orchestrator-sdk[workflows]'"
            ) from None
        for module in self._by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            data = cloudpickle.dumps({"functions": dict(self._functions)}, protocol=5)
        finally:
            for module in self._by_value:
                cloudpickle.unregister_pickle_by_value(module)
        return data, hashlib.sha256(data).hexdigest(), sorted(self._functions)

    def graph(self, sha256: str) -> dict[str, Any]:
        """The workflow graph, its steps naming the bundle `sha256`, ending in an output node."""
        nodes = [_with_bundle(node, sha256) for node in self._nodes]
        edges = [*self._edges]
        ends = {node["id"] for node in self._nodes} - {edge["source"] for edge in edges}
        nodes.append({"id": "output", "type": "output"})
        edges += [{"source": end, "target": "output"} for end in sorted(ends)]
        return {"nodes": nodes, "edges": edges, "settings": {}}

    @staticmethod
    def python() -> str:
        return f"{sys.version_info.major}.{sys.version_info.minor}"

    # --- internals -------------------------------------------------------------------------------------

    def _ship(self, function: Callable[..., Any]) -> str:
        if not callable(function):
            raise TypeError(f"{function!r} is not a function")
        name = getattr(function, "__name__", "function")
        if name == "<lambda>":
            name = f"lambda_{len(self._functions)}"
        if name in self._functions and self._functions[name] is not function:
            name = f"{name}_{len(self._functions)}"
        self._functions[name] = function
        return name

    def _id(self, wanted: str) -> str:
        taken = {node["id"] for node in self._nodes}
        node_id, n = wanted, 2
        while node_id in taken or node_id == "output":
            node_id, n = f"{wanted}_{n}", n + 1
        return node_id

    def _add(self, node: dict[str, Any], after: str | list[str] | None, when: str | None) -> Workflow:
        sources = [after] if isinstance(after, str) else list(after or [self._last])
        known = {n["id"] for n in self._nodes}
        for source in sources:
            if source not in known:
                raise ValueError(f"after={source!r}: no such step (steps: {', '.join(sorted(known))})")
            edge: dict[str, Any] = {"source": source, "target": node["id"]}
            if when:
                edge["condition"] = when
            self._edges.append(edge)
        self._nodes.append(node)
        self._last = node["id"]
        return self


def _with_bundle(node: dict[str, Any], sha256: str) -> dict[str, Any]:
    config = node.get("config")
    if not config or config.get("bundle") != BUNDLE_PLACEHOLDER:
        return dict(node)
    return {**node, "config": {**config, "bundle": sha256}}
