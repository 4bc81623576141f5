"""System routes for operators (docs/api.md "Health and system"), admin only: `/system/status` (Ray nodes,
resources, the platform's actors, Serve), `/system/metrics` (this replica's requests, queues, runs, steps,
approvals, webhook deliveries) and `/system/logs` (the platform's own log lines). `/system/health` is public,
in health.py."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import psutil
from fastapi import Query, Request
from starlette.concurrency import run_in_threadpool

from actors import system_info
from core.clock import utcnow
from core.errors import ServiceUnavailable
from serve_app.context import VERSION
from serve_app.deps import Context
from serve_app.pagination import QueryTime
from serve_app.routing import protected_router
from services import system
from services.principal import Role

router = protected_router(prefix="/system", tags=["system"], resource="system", min_role=Role.admin)

RAY_TIMEOUT_S = 10.0
LOG_SERVICES = "^(api|router|reconciler|store|event-hub|run-pool|agent|run|approval|serve-controller|serve-proxy)$"
_T = TypeVar("_T")


async def _off_loop(call: Callable[[], _T], timeout_s: float = RAY_TIMEOUT_S) -> _T:
    """A blocking Ray call in the thread pool, bounded (a stuck call's thread is abandoned, not awaited)."""
    return await asyncio.wait_for(run_in_threadpool(call), timeout=timeout_s)


@router.get("/status")
async def system_status(context: Context) -> dict[str, Any]:
    """Version, this replica's uptime, and Ray: nodes (alive or dead, address, resources total and available),
    cluster resources, the platform's actors counted by kind and Ray state, Serve's applications with
    their replicas, and the run pool (`run_pool`: warm actors, floor, ceiling, runs per actor, busy, queued).
    `ray: {"connected": false}` when this API process is not on a Ray cluster."""
    started = psutil.Process(os.getpid()).create_time()
    try:
        ray = await _off_loop(lambda: system_info.ray_status(context.settings))
    except TimeoutError:
        ray = {"connected": True, "error": f"Ray did not answer within {RAY_TIMEOUT_S:.0f}s"}
    return {
        "version": VERSION,
        "environment": context.settings.environment.value,
        "timestamp": utcnow(),
        "uptime_s": round(time.time() - started, 1),
        "ray": ray,
    }


def _database_figures(context: Context) -> dict[str, Any]:
    with context.db.session() as session:
        figures: dict[str, Any] = {
            "task_queue": system.task_queue(session),
            "runs_by_status": system.runs_by_status(session),
            "step_latency": system.step_latency(session),
            "approvals_pending": system.approvals_pending(session),
            "webhook_deliveries": system.webhook_deliveries(session),
        }
    return figures


@router.get("/metrics")
async def system_metrics(request: Request, context: Context) -> dict[str, Any]:
    """`requests`: this replica's last minute (`scope: replica`; each API replica counts its own) per route;
    the rest counted in the database across all tenants: unfinished tasks by status and priority, runs by
    status, step latency p50/p95 over the last hour, approvals pending, webhook deliveries by status."""
    requests = request.app.state.request_stats.snapshot()
    figures = await run_in_threadpool(_database_figures, context)
    return {"timestamp": utcnow(), "requests": requests, **figures}


@router.get("/logs")
async def system_logs(
    context: Context,
    level: Annotated[str | None, Query(pattern="^(?i:error|warn|warning|info|debug)$")] = None,
    service: Annotated[str | None, Query(pattern=LOG_SERVICES)] = None,
    since: QueryTime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The platform's own log lines `{timestamp, level, service, logger, correlation_id, message}`, newest
    first: from its actors (router, reconciler, store, event-hub, run pool, agents, runs) and the API's Serve
    replicas, read through Ray's state API. `level` keeps that level and above; `service` one kind of actor.
    Outside a Ray cluster the list is empty, with a note."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=utcnow().tzinfo)
    try:
        return await _off_loop(
            lambda: system_info.read_logs(context.settings, service=service, since=since, level=level, limit=limit),
            timeout_s=30.0,
        )
    except TimeoutError as exc:
        raise ServiceUnavailable("Ray's state API did not return the logs in time") from exc
