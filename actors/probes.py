"""Health probes for Ray and Serve, seen from inside a process of the cluster (or outside it)."""

from __future__ import annotations

import ray

from actors import gcs
from services.health import FAIL, PASS, WARN, CheckResult


def ray_probe() -> CheckResult:
    if not ray.is_initialized():
        return CheckResult(WARN, "not connected to Ray (the API is running outside the cluster)")
    if not gcs.reachable():
        return CheckResult(FAIL, "Ray's control store (GCS) is not answering: restarting or unreachable")
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if not nodes:
        return CheckResult(FAIL, "no live Ray node")
    resources = ray.cluster_resources()
    return CheckResult(
        PASS,
        f"{len(nodes)} live node(s)",
        {"nodes": len(nodes), "cpus": resources.get("CPU", 0), "memory_mb": int(resources.get("memory", 0) / 2**20)},
    )


def serve_probe() -> CheckResult:
    from ray import serve

    try:
        context = serve.get_replica_context()
    except Exception:
        context = None
    if context is None:
        return CheckResult(WARN, "not running under Ray Serve")
    status = serve.status()
    applications = {
        name: app.status.value if hasattr(app.status, "value") else str(app.status)
        for name, app in status.applications.items()
    }
    running = all(state in ("RUNNING", "DEPLOYING") for state in applications.values())
    return CheckResult(
        PASS if running else WARN,
        "serve applications running" if running else "a serve application is not running",
        {"replica": context.replica_id.unique_id, "applications": applications},
    )
