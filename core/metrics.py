"""The platform's own metrics (docs/api.md "Health and system", Metrics): their definitions and the functions
that record them.

Recording goes to the backend the process installed (`actors.metrics`: `ray.util.metrics`, which Ray exports
with its own on every node's metrics port, for Prometheus and the Ray dashboard). Until one is installed, and
whenever the backend declines to create a metric (outside Ray), every function here does nothing, so callers
never check.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

PRIORITIES = ("P0", "P1", "P2", "P3")
STEP_LATENCY_BOUNDARIES_MS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000]

# name -> (kind, description, tag keys); Prometheus shows them as `ray_<name>` (counters also `_total`).
DEFINITIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "orchestrator_queue_depth": ("gauge", "Tasks waiting in the task router's queues", ("priority",)),
    "orchestrator_tasks_routed": ("counter", "Routing decisions of the task router", ("outcome",)),
    "orchestrator_step_latency_ms": ("histogram", "Duration of workflow steps in milliseconds", ("status",)),
    "orchestrator_runs": ("gauge", "Workflow runs by status", ("status",)),
    "orchestrator_approvals_pending": ("gauge", "Approvals waiting for a decision", ()),
    "orchestrator_webhook_deliveries": ("counter", "Webhook delivery attempts by outcome", ("outcome",)),
}


class MetricsBackend(Protocol):
    def create(self, name: str, kind: str, description: str, tag_keys: tuple[str, ...]) -> Any | None:
        """A gauge (`set`), counter (`inc`) or histogram (`observe`, over `STEP_LATENCY_BOUNDARIES_MS`),
        each taking `(value, tags)`; None when this process cannot record (the metric is asked for again)."""
        ...


_backend: MetricsBackend | None = None
_created: dict[str, Any] = {}


def install(backend: MetricsBackend | None) -> None:
    """Record this process's metrics through `backend` (None: record nothing)."""
    global _backend
    _backend = backend


def _metric(name: str) -> Any | None:
    metric = _created.get(name)
    if metric is not None:
        return metric
    if _backend is None:
        return None
    kind, description, tags = DEFINITIONS[name]
    metric = _backend.create(name, kind, description, tags)
    if metric is not None:
        _created[name] = metric
    return metric


def set_queue_depth(depth: dict[str, int]) -> None:
    """The router's queues by priority (every priority, so that an emptied one reads 0)."""
    gauge = _metric("orchestrator_queue_depth")
    if gauge is not None:
        for priority in PRIORITIES:
            gauge.set(depth.get(priority, 0), {"priority": priority})


def count_tasks_routed(outcomes: dict[str, int]) -> None:
    """`assigned`: a routing decision committed; `stale`: refused on re-check (the agent filled up, the task
    went elsewhere), the task queued again."""
    _increment("orchestrator_tasks_routed", outcomes)


def observe_step_latency(duration_ms: float, status: str) -> None:
    histogram = _metric("orchestrator_step_latency_ms")
    if histogram is not None:
        histogram.observe(duration_ms, {"status": status})


def record_webhook_deliveries(counts: dict[str, int]) -> None:
    """Webhook deliveries by outcome (`delivered`, `failed`, `retrying` …) since the last call."""
    _increment("orchestrator_webhook_deliveries", counts)


def set_platform_state(
    runs_by_status: dict[str, int], approvals_pending: int, every_status: Iterable[str] = ()
) -> None:
    """`every_status`: every status a run can hold, so that a gauge whose runs all left drops to 0."""
    runs = _metric("orchestrator_runs")
    if runs is None:
        return
    for status in sorted(set(every_status) | set(runs_by_status)):
        runs.set(runs_by_status.get(status, 0), {"status": status})
    _metric("orchestrator_approvals_pending").set(approvals_pending)  # type: ignore[union-attr]


def _increment(name: str, counts: dict[str, int]) -> None:
    counter = _metric(name)
    if counter is not None:
        for outcome, count in counts.items():
            if count > 0:  # Ray refuses a zero increment
                counter.inc(count, {"outcome": outcome})
