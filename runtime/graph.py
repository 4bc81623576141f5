"""A workflow's graph (`workflow_data = {nodes, edges, settings}`, docs/workflows.md): validation on save, and the
walk a run takes through it.

Validation answers every problem at once, each naming its field (`nodes[2].config.function`): ids unique,
edges between existing nodes, no cycle unless a node on it allows loops (`"allow_loops": true`), each
node's configuration valid for its type, every condition and template compilable.

The walk: a run starts at the nodes without incoming edges (normally the `input` node). After a node, the
run follows each outgoing edge whose `condition` holds (and, after a `condition` node, whose `branch`
matches its result); the next nodes are taken one at a time, in order, so that every step is recorded
before the next starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime import templates
from runtime.expressions import ExpressionError, compile_expression, truthy
from runtime.nodes import NODE_TYPES

MAX_NODES = 500
NODE_ID = r"^[A-Za-z0-9_.-]{1,100}$"


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    condition: str | None = None
    branch: str | None = None  # after a condition node: "true" or "false"


@dataclass(slots=True)
class Graph:
    nodes: dict[str, dict[str, Any]]
    edges: list[Edge]
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Graph:
        nodes = {node["id"]: node for node in data.get("nodes", [])}
        edges = [
            Edge(
                edge["source"],
                edge["target"],
                edge.get("condition"),
                str(edge["branch"]).lower() if edge.get("branch") is not None else None,
            )
            for edge in data.get("edges", [])
        ]
        return cls(nodes=nodes, edges=edges, settings=dict(data.get("settings") or {}))

    def starts(self) -> list[str]:
        targets = {edge.target for edge in self.edges}
        return [node_id for node_id in self.nodes if node_id not in targets]

    def successors(self, node_id: str, state: Mapping[str, Any], branch: str | None = None) -> list[str]:
        chosen = []
        for edge in self.edges:
            if edge.source != node_id:
                continue
            if edge.branch is not None and edge.branch != branch:
                continue
            if edge.condition and not truthy(edge.condition, state):
                continue
            chosen.append(edge.target)
        return chosen


def validate(data: Any) -> list[tuple[str, str]]:
    """Every problem of a workflow graph as (field, message); empty when it is valid."""
    if not isinstance(data, Mapping):
        return [("workflow_data", "must be an object with nodes, edges and settings")]
    problems: list[tuple[str, str]] = []
    nodes, edges = data.get("nodes"), data.get("edges", [])
    if not isinstance(nodes, list) or not nodes:
        return [("workflow_data.nodes", "at least one node is required")]
    if len(nodes) > MAX_NODES:
        return [("workflow_data.nodes", f"at most {MAX_NODES} nodes")]
    if not isinstance(edges, list):
        return [("workflow_data.edges", "must be a list")]
    if not isinstance(data.get("settings", {}), Mapping):
        problems.append(("workflow_data.settings", "must be an object"))
    seen: dict[str, int] = {}
    loops_allowed: set[str] = set()
    for index, node in enumerate(nodes):
        where = f"workflow_data.nodes[{index}]"
        if not isinstance(node, Mapping):
            problems.append((where, "must be an object"))
            continue
        node_id = node.get("id")
        if not isinstance(node_id, str) or not node_id or len(node_id) > 100:
            problems.append((f"{where}.id", "a non-empty string of at most 100 characters is required"))
            continue
        if node_id in seen:
            problems.append((f"{where}.id", f"'{node_id}' is already the id of nodes[{seen[node_id]}]"))
            continue
        seen[node_id] = index
        kind = node.get("type")
        if kind not in NODE_TYPES:
            problems.append((f"{where}.type", f"one of {', '.join(sorted(NODE_TYPES))}"))
            continue
        config = node.get("config", {})
        if not isinstance(config, Mapping):
            problems.append((f"{where}.config", "must be an object"))
            continue
        problems += [
            (f"{where}.config.{name}" if name else f"{where}.config", message)
            for name, message in NODE_TYPES[kind].validate(config)
        ]
        problems += templates.check(dict(config), f"{where}.config")
        for name in ("retry_count", "timeout_s"):
            value = node.get(name)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value < 0):
                problems.append((f"{where}.{name}", "a number >= 0"))
        if node.get("allow_loops"):
            loops_allowed.add(node_id)
    for index, edge in enumerate(edges):
        where = f"workflow_data.edges[{index}]"
        if not isinstance(edge, Mapping):
            problems.append((where, "must be an object"))
            continue
        for end in ("source", "target"):
            if edge.get(end) not in seen:
                problems.append((f"{where}.{end}", f"no node with id {edge.get(end)!r}"))
        if edge.get("condition") is not None:
            try:
                compile_expression(edge["condition"])
            except ExpressionError as exc:
                problems.append((f"{where}.condition", str(exc)))
        if edge.get("branch") is not None and str(edge["branch"]).lower() not in ("true", "false"):
            problems.append((f"{where}.branch", "true or false"))
    if problems:
        return problems
    graph = Graph.parse(data)
    cycle = _cycle(graph)
    if cycle and not loops_allowed.intersection(cycle):
        problems.append(
            (
                "workflow_data.edges",
                f"cycle {' -> '.join([*cycle, cycle[0]])}: set allow_loops on a node of it to allow it",
            )
        )
    if not graph.starts():
        problems.append(("workflow_data.nodes", "no start node: every node has an incoming edge"))
    return problems


def _cycle(graph: Graph) -> list[str] | None:
    """One cycle of the graph, as the nodes along it, or None."""
    out: dict[str, list[str]] = {node_id: [] for node_id in graph.nodes}
    for edge in graph.edges:
        out[edge.source].append(edge.target)
    color = dict.fromkeys(graph.nodes, 0)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(node_id: str) -> list[str] | None:
        color[node_id] = 1
        path.append(node_id)
        for target in out[node_id]:
            if color[target] == 1:
                return path[path.index(target) :]
            if color[target] == 0 and (found := visit(target)):
                return found
        path.pop()
        color[node_id] = 2
        return None

    for node_id in graph.nodes:
        if color[node_id] == 0 and (found := visit(node_id)):
            return found
    return None
