"""Messages to the cluster's singleton actors (the task router, the run pool), fire-and-forget: the
database already holds what a message says, and each actor's own pass (the router's tick, the
reconciler's resume of runs) re-reads it, so a lost message delays the work by at most one pass."""

from __future__ import annotations

import logging
from typing import Any

import ray

from actors.names import ROUTER_NAME, RUN_POOL_NAME
from cluster import tracing
from core.settings import Settings

log = logging.getLogger("orchestrator.actors")

# Handles looked up once per process (a lookup is a round trip to Ray's control store, which would
# otherwise be paid on every task created); forgotten when a call through one fails.
_handles: dict[tuple[str, str], Any] = {}


def _actor(settings: Settings, name: str) -> Any:
    key = (settings.ray.ray_namespace, name)
    handle = _handles.get(key)
    if handle is None:
        handle = _handles[key] = ray.get_actor(name, namespace=settings.ray.ray_namespace)
    return handle


def tell(settings: Settings, name: str, method: str, *args: Any, trace: dict[str, str] | None = None) -> None:
    """`trace`: `tracing.carrier()`, for methods that take it (the router's messages, the run pool's submit)."""
    if not ray.is_initialized():
        return
    try:
        call = getattr(_actor(settings, name), method)
        if trace is None:
            call.remote(*args)
        else:
            call.remote(*args, trace=trace)
    except Exception as exc:  # restarting or absent: its own pass catches up
        _handles.pop((settings.ray.ray_namespace, name), None)
        log.warning("%s not told %s: %s", name, method, exc)


def ask(settings: Settings, name: str, method: str, *args: Any, timeout_s: float = 2.0) -> Any:
    if not ray.is_initialized():
        return None
    try:
        return ray.get(getattr(_actor(settings, name), method).remote(*args), timeout=timeout_s)
    except Exception as exc:
        _handles.pop((settings.ray.ray_namespace, name), None)
        log.warning("%s.%s unavailable: %s", name, method, exc)
        return None


def notify(settings: Settings, method: str, *args: Any) -> None:
    """Tell the task router (within the caller's trace and correlation id)."""
    tell(settings, ROUTER_NAME, method, *args, trace=tracing.carrier())


def stats(settings: Settings, timeout_s: float = 2.0) -> dict[str, Any] | None:
    return ask(settings, ROUTER_NAME, "stats", timeout_s=timeout_s)


def submit_run(settings: Settings, execution_id: str, resources: dict[str, Any] | None = None) -> None:
    """Hand a run to the run pool (a repeated submit of the same run is harmless)."""
    tell(settings, RUN_POOL_NAME, "submit", execution_id, resources or None, trace=tracing.carrier())
