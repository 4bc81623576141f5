"""Where the platform's own actors live: the store, the task router, the event hub, the reconciler and the run
pool (`runs`) are pinned to the head node, the only node whose loss stops the cluster anyway.

On a worker they would be lost with it (Ray restarts them elsewhere, but the API's calls to them fail
meanwhile, and their loops stop: no routing, no events, no reconcile), and with the `num-cpus: 0` head that
KubeRay and the cluster launcher recommend, nothing else asks for the head. Each asks for 0 CPU, so it fits a
head with none, and for a sliver of the head's own resource, the pin Ray's Serve controller and Train's state
actor use: a restarted head (GCS fault tolerance) has it again under a new node id, where a
`NodeAffinitySchedulingStrategy` on the old id would leave the actors unschedulable. Agents' actors, warm and
dedicated run actors and the API's replicas are the work: Ray places them by their resources, on workers
when they ask for CPU (docs/deploy.md "Where each actor lives").
"""

from __future__ import annotations

from typing import Any

# Ray's resource of the head node (`ray._common.constants.HEAD_NODE_RESOURCE_NAME`, a private module;
# tests/unit/test_placement.py checks the two agree).
HEAD_NODE_RESOURCE = "node:__internal_head__"
HEAD_NODE_SHARE = 0.001


def system_actor_options() -> dict[str, Any]:
    """Ray `.options(...)` of a platform singleton: on the head, reserving no CPU."""
    return {"num_cpus": 0, "resources": {HEAD_NODE_RESOURCE: HEAD_NODE_SHARE}}
