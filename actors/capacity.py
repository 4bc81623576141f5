"""The cluster's shape for admission: free resources per live node, and every node size it could have.

A thin wrapper over Ray's global state so that `schedulers.admission` stays pure. Node types come from
the autoscaler's cluster config when one runs (the Ray cluster launcher, KubeRay, AutoscalingCluster).
"""

from __future__ import annotations

import ray
from ray._private import state as ray_state

from schedulers.admission import ClusterShape, ray_resources


def cluster_shape(declared_node_types: list[dict[str, float]] | None = None) -> ClusterShape:
    """Live nodes, plus the node types the autoscaler publishes, else those the operator declared
    (ORCHESTRATOR_RAY_NODE_TYPES, in `{cpu, memory (MB), gpu}`)."""
    available = tuple(dict(resources) for resources in ray_state.available_resources_per_node().values())
    totals = [dict(resources) for resources in ray_state.total_resources_per_node().values()]
    published = _autoscaler_node_types()
    totals.extend(published or [ray_resources(node) for node in declared_node_types or []])
    return ClusterShape(available=available, totals=tuple(totals))


def _autoscaler_node_types() -> list[dict[str, float]]:
    """Resources of each node type the autoscaler may still start (max_count not yet reached)."""
    config = ray_state.state.get_cluster_config() if ray.is_initialized() else None
    if config is None:
        return []
    return [
        {name: float(amount) for name, amount in group.resources.items()}
        for group in config.node_group_configs
        if group.max_count != 0 and group.resources
    ]
