"""A multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head and worker nodes, each its own
raylet, as Ray's own tests build one), owned by a process of its own and driven by JSON commands on stdin.

The cluster lives outside the pytest process so that the test session's own Ray (tests/integration, the e2e
platform) and this cluster never meet, and so that removing a node never touches the process that asks for it.
The process does not connect to Ray as a driver: it reads the GCS's tables directly (nodes, actors), which
needs no dashboard.

One JSON command per line in, one JSON answer per line out:
  {"op": "add_node", "num_cpus": 2, "resources": {...}}  → {"ok": true, "node_id": …}
  {"op": "remove_node", "node_id": …, "graceful": false} → {"ok": true, "removed_at": <time.time()>}
  {"op": "nodes"}                                        → {"ok": true, "nodes": [{"node_id", "alive", "resources"}]}
  {"op": "actors"}                                       → {"ok": true, "actors": [{"name", "state", "node_id", …}]}
  {"op": "kill_gcs"}                                     → {"ok": true, "killed_at": <time.time()>}
  {"op": "start_gcs"}                                    → {"ok": true, "started_at": <time.time()>}
`kill_gcs` kills the head's gcs_server (SIGKILL) and `start_gcs` starts a new one on the same port, as Ray's own
GCS fault-tolerance tests do; the new one recovers the cluster's state only if the GCS keeps it in Redis
(`RAY_REDIS_ADDRESS` in this process's environment, read by the head as `ray start --head` reads it).
The first line out, once the head runs: {"ok": true, "ready": true, "address": …, "head": <node id>}.
Run as ``python -m tests.multinode.cluster_process '<head node args as JSON>'``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ray._common.utils import get_ray_address_file
from ray.cluster_utils import Cluster


def _nodes(cluster: Cluster) -> dict[str, Any]:
    return {
        "nodes": [
            {"node_id": node["NodeID"], "alive": node["Alive"], "resources": node["Resources"]}
            for node in cluster.global_state.node_table()
        ]
    }


def _actors(cluster: Cluster) -> dict[str, Any]:
    # A restarted actor keeps its id: one row per actor, its current node and state. (The GCS's table does not
    # say an actor's namespace; the cluster runs one platform.)
    rows = [
        {
            "name": actor["Name"],
            "state": actor["State"],
            "node_id": actor["Address"]["NodeID"] or None,
            "pid": actor["Pid"] or None,
            "class_name": actor["ActorClassName"],
            "restarts": actor["NumRestarts"],
        }
        for actor in cluster.global_state.actor_table(None).values()
    ]
    return {"actors": rows}


class AddressFile:
    """`Cluster` writes its address to the machine's `/tmp/ray/ray_current_cluster` (where `ray.init()` and
    `address="auto"` look for "the" local cluster) and deletes the file at shutdown: put back what was there,
    so that another session's `ray start` cluster stays the one found. Everything here uses explicit addresses."""

    def __init__(self) -> None:
        self.path = Path(get_ray_address_file(None))
        self.previous = self.path.read_text() if self.path.exists() else None

    def restore(self) -> None:
        if self.previous is None:
            self.path.unlink(missing_ok=True)
        else:
            self.path.write_text(self.previous)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    head_args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    address_file = AddressFile()
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    address_file.restore()
    nodes = {cluster.head_node.node_id: cluster.head_node}
    print(json.dumps({"ok": True, "ready": True, "address": cluster.address, "head": cluster.head_node.node_id}))
    sys.stdout.flush()
    try:
        for line in sys.stdin:
            command = json.loads(line)
            try:
                op = command["op"]
                if op == "add_node":
                    node = cluster.add_node(num_cpus=command["num_cpus"], resources=command.get("resources") or {})
                    nodes[node.node_id] = node
                    answer: dict[str, Any] = {"node_id": node.node_id}
                elif op == "remove_node":
                    node = nodes.pop(command["node_id"])
                    removed_at = time.time()
                    cluster.remove_node(node, allow_graceful=command.get("graceful", False))
                    answer = {"removed_at": removed_at}
                elif op == "nodes":
                    answer = _nodes(cluster)
                elif op == "actors":
                    answer = _actors(cluster)
                elif op == "kill_gcs":
                    killed_at = time.time()
                    cluster.head_node.kill_gcs_server()
                    answer = {"killed_at": killed_at}
                elif op == "start_gcs":
                    cluster.head_node.start_gcs_server()
                    answer = {"started_at": time.time()}
                else:
                    raise ValueError(f"unknown op {op!r}")
                print(json.dumps({"ok": True, **answer}), flush=True)
            except Exception as exc:  # answered, so that the test fails with the reason
                print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
    finally:
        cluster.shutdown()
        address_file.restore()


if __name__ == "__main__":
    main()
