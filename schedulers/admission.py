"""Admission by resources: can a request for CPU/memory/GPU be placed now, later, or never?

Pure policy over plain dicts of Ray resource names (`CPU`, `GPU`, `memory` in bytes), so that it is
tested without Ray. `actors/capacity.py` reads the live nodes and the autoscaler's node types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MB = 1024 * 1024


class Placement(StrEnum):
    now = "now"  # a live node has the resources free
    later = "later"  # a live node or an autoscaler node type could hold it, once others free up or scale
    never = "never"  # no node and no node type is big enough: INSUFFICIENT_RESOURCES


@dataclass(frozen=True, slots=True)
class ClusterShape:
    """What the cluster has (`available` per live node) and could have (`totals` of live nodes plus the
    resources of every node type the autoscaler may still add)."""

    available: tuple[Mapping[str, float], ...]
    totals: tuple[Mapping[str, float], ...]


def ray_resources(limits: Mapping[str, Any], *, default_cpu: float = 0.0) -> dict[str, float]:
    """An agent's or run's `{cpu, memory (MB), gpu}` as Ray's resource request (zero amounts dropped)."""
    cpu = float(limits.get("cpu") if limits.get("cpu") is not None else default_cpu)
    memory_mb = float(limits.get("memory") or 0)
    gpu = float(limits.get("gpu") or 0)
    request = {"CPU": cpu, "memory": memory_mb * MB, "GPU": gpu}
    return {name: amount for name, amount in request.items() if amount > 0}


def actor_options(request: Mapping[str, float]) -> dict[str, Any]:
    """Ray `.options(...)` keyword arguments for a resource request from `ray_resources`."""
    options: dict[str, Any] = {"num_cpus": request.get("CPU", 0.0)}
    if request.get("memory"):
        options["memory"] = int(request["memory"])
    if request.get("GPU"):
        options["num_gpus"] = request["GPU"]
    return options


# Actor threads beyond an agent's task slots: health pings, heartbeats, passivation.
AGENT_CONTROL_CALLS = 4


def agent_actor_options(request: Mapping[str, float], max_concurrent_tasks: int) -> dict[str, Any]:
    """Ray options of an agent's actor: its resources and a thread per task slot plus control calls."""
    return {**actor_options(request), "max_concurrency": max_concurrent_tasks + AGENT_CONTROL_CALLS}


# Not a Ray resource: a run that must have a process of its own (shipped code); admission ignores it.
ISOLATED = "isolated_process"


def fits(request: Mapping[str, float], node: Mapping[str, float]) -> bool:
    return all(node.get(name, 0.0) + 1e-9 >= amount for name, amount in request.items() if name != ISOLATED)


def place(request: Mapping[str, float], shape: ClusterShape) -> Placement:
    """Where a request stands: one node must hold all of it (an actor never spans nodes)."""
    if any(fits(request, node) for node in shape.available):
        return Placement.now
    if any(fits(request, node) for node in shape.totals):
        return Placement.later
    return Placement.never


def largest_node(nodes: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The per-resource maximum over nodes, for an error message that says what would fit."""
    largest: dict[str, float] = {}
    for node in nodes:
        for name in ("CPU", "GPU", "memory"):
            largest[name] = max(largest.get(name, 0.0), node.get(name, 0.0))
    return largest


def describe(request: Mapping[str, float]) -> str:
    """`2 CPU, 4096 MB, 1 GPU` for messages."""
    parts = [f"{request.get('CPU', 0):g} CPU", f"{request.get('memory', 0) / MB:.0f} MB"]
    if request.get("GPU"):
        parts.append(f"{request['GPU']:g} GPU")
    return ", ".join(parts)
