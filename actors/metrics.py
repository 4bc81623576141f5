"""The metrics backend of the platform's processes on Ray: `core.metrics` recorded through `ray.util.metrics`,
which Ray exports with its own on every node's metrics port (Prometheus shows `ray_orchestrator_*`).

Each actor that records metrics installs it in its constructor. Outside Ray (unit and integration tests that
build an actor in process) the backend creates nothing, so recording does nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from core import metrics
from schedulers.execution_lifecycle import ExecutionStatus
from services import system

log = logging.getLogger("orchestrator.metrics")


class RayMetrics:
    """`core.metrics.MetricsBackend` on `ray.util.metrics`; each metric is created on first use."""

    def create(self, name: str, kind: str, description: str, tag_keys: tuple[str, ...]) -> Any | None:
        if not ray.is_initialized():
            return None
        from ray.util import metrics as ray_metrics

        if kind == "gauge":
            return ray_metrics.Gauge(name, description, tag_keys=tag_keys)
        if kind == "counter":
            return ray_metrics.Counter(name, description, tag_keys=tag_keys)
        return ray_metrics.Histogram(
            name, description, boundaries=metrics.STEP_LATENCY_BOUNDARIES_MS, tag_keys=tag_keys
        )


def install_ray_metrics() -> None:
    """Record this process's `core.metrics` through Ray (idempotent)."""
    metrics.install(RayMetrics())


def publish_platform_state(db: Any) -> None:
    """Runs by status and approvals pending, read from the database (the reconciler calls this each pass).
    A failure is logged, never raised: metrics must not stop a reconcile pass."""
    if not ray.is_initialized():
        return
    try:
        with db.session() as session:
            runs, pending = system.runs_by_status(session), system.approvals_pending(session)
        metrics.set_platform_state(runs, pending, every_status=ExecutionStatus)
    except Exception as exc:
        log.warning("platform metrics not published: %s", exc)
