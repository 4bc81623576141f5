"""The FastAPI application factory: the same app runs under Ray Serve and, for baselines, under uvicorn."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core import telemetry_setup, tracing
from core.errors import ERROR_CODES
from core.logging import configure_logging
from core.settings import Settings, load_settings, resolve_secrets
from serve_app.context import VERSION, AppContext
from serve_app.errors import install_error_handlers
from serve_app.middleware import BodySizeLimitMiddleware, CorrelationIdMiddleware, QueryCaseMiddleware
from serve_app.rate_limits import RateLimitHeadersMiddleware
from serve_app.realtime import EventFeed, ray_hub_poll
from serve_app.request_stats import RequestStats, RequestStatsMiddleware
from serve_app.routes import (
    agents,
    approvals,
    auth,
    code_bundles,
    configurations,
    console,
    dashboard,
    events,
    health,
    marketplace,
    oauth,
    organizations,
    projects,
    routing_rules,
    system,
    tasks,
    users,
    webhooks,
    workflows,
    workspaces,
    ws,
)
from serve_app.routing import assert_routes_protected, document_openapi

log = logging.getLogger("orchestrator.api")

API_PREFIX = "/api/v1"
UPLOAD_PATHS = re.compile(rf"^{API_PREFIX}/(tasks/[^/]+/files/?|code-bundles/[0-9a-f]{{64}})$")

_DESCRIPTION = f"""
Deploy, run and supervise AI agents on a Ray cluster.

Authenticate with `Authorization: Bearer <JWT or API key>` (or `X-API-Key`). Every error answers
`{{"error": {{code, message, details, timestamp, correlation_id}}}}`; codes and statuses:
{", ".join(f"`{code}` {status}" for code, status in ERROR_CODES.items())}.
Every response carries `X-Correlation-ID`.
"""


def keep_worker_threads() -> None:
    """Make the app's lifespan task the owner of anyio's worker threads (sync routes, `run_in_threadpool`).

    anyio binds each worker thread to the event loop's root task, which it finds only in a loop started
    with `asyncio.run`/`run_until_complete` (uvicorn's). Serve runs a replica's loop with `run_forever`:
    anyio then binds a new thread to the *request's* task and stops it when that request ends, so nearly
    every sync call started a thread of its own (855 threads for 1000 task creations, +1.2 ms of CPU per
    request). The lifespan task lives as long as the app, so the threads are reused and end with it.
    Called from the lifespan; a no-op where anyio already found its root, or if its internals change.
    """
    try:
        from anyio._backends._asyncio import _root_task, find_root_task
    except ImportError:  # pragma: no cover (another anyio layout: keep its default behaviour)
        log.warning("anyio's root task cannot be set: worker threads may not be reused")
        return
    if find_root_task() is asyncio.current_task():
        _root_task.set(asyncio.current_task())


def fastapi_telemetry() -> dict[str, Any]:
    """`FastAPI(telemetry=…)`: its native server span per request, into this process's tracer provider
    (`core.tracing`; the global provider is never set, so nothing else starts tracing behind our back)."""
    provider = tracing.provider()
    return {
        "tracer_provider": provider,
        "tracing": provider is not None,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
    }


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API. Without settings, they are read from the environment (uvicorn --factory)."""
    settings = resolve_secrets(settings or load_settings())
    configure_logging(settings.log_level)
    telemetry_setup.configure(settings, "api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keep_worker_threads()
        context = AppContext.build(settings)
        app.state.context = context
        if getattr(app.state, "event_feed", None) is None:  # tests may bring their own hub
            app.state.event_feed = EventFeed(ray_hub_poll(settings))
        try:
            yield
        finally:
            await app.state.event_feed.aclose()
            await context.aclose()

    app = FastAPI(
        title="Orchestrator API",
        version=VERSION,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url="/redoc",
        # FastAPI's native server span per request, into our tracer provider; off when tracing is off.
        telemetry=fastapi_telemetry(),
    )
    app.include_router(health.root)
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(auth.public, prefix=API_PREFIX)
    app.include_router(auth.router, prefix=API_PREFIX)
    app.include_router(auth.service, prefix=API_PREFIX)
    app.include_router(auth.keys, prefix=API_PREFIX)
    app.include_router(oauth.public, prefix=API_PREFIX)
    # Some clients call the token endpoint at the root (docs/api.md "Conventions"); same route, public alias.
    app.include_router(oauth.public, include_in_schema=False)
    app.include_router(oauth.clients, prefix=API_PREFIX)
    app.include_router(users.router, prefix=API_PREFIX)
    app.include_router(organizations.router, prefix=API_PREFIX)
    app.include_router(agents.router, prefix=API_PREFIX)
    app.include_router(configurations.router, prefix=API_PREFIX)
    app.include_router(tasks.router, prefix=API_PREFIX)
    app.include_router(events.router, prefix=API_PREFIX)
    app.include_router(approvals.router, prefix=API_PREFIX)
    app.include_router(routing_rules.router, prefix=API_PREFIX)
    app.include_router(events.stats_root)
    app.include_router(events.stats_router, prefix=API_PREFIX)
    app.include_router(marketplace.router, prefix=API_PREFIX)
    app.include_router(projects.router, prefix=API_PREFIX)
    app.include_router(workflows.router, prefix=API_PREFIX)
    app.include_router(workflows.runs, prefix=API_PREFIX)
    app.include_router(dashboard.router, prefix=API_PREFIX)
    app.include_router(system.router, prefix=API_PREFIX)
    app.include_router(webhooks.router, prefix=API_PREFIX)
    app.include_router(workspaces.requirement_routes, prefix=API_PREFIX)
    app.include_router(workspaces.files, prefix=API_PREFIX)
    app.include_router(workspaces.archives, prefix=API_PREFIX)
    app.include_router(workspaces.settings_routes, prefix=API_PREFIX)
    app.include_router(code_bundles.router, prefix=API_PREFIX)
    app.include_router(ws.router, prefix=API_PREFIX)
    app.include_router(ws.router, include_in_schema=False)  # `/ws`, the path some clients use
    app.include_router(console.router)  # the web console at `/console` (docs/console.md)
    install_error_handlers(app)
    assert_routes_protected(app)
    document_openapi(app, settings)

    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "X-Correlation-ID",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "X-RateLimit-Window",
                "Retry-After",
            ],
        )
    # Starlette runs the last added outermost: correlation id, query case, rate-limit headers, body limit,
    # request timing (GET /system/metrics).
    # Multipart uploads (task files) may be larger than JSON bodies; the file limit itself is the
    # route's, this only lets such a body through (with room for the multipart framing).
    upload_limit = max(settings.files.max_upload_bytes, settings.workflows.code_bundle_max_bytes) + 64 * 1024
    uploads = (UPLOAD_PATHS, max(settings.api.max_request_bytes, upload_limit))
    app.state.request_stats = RequestStats()
    app.add_middleware(RequestStatsMiddleware, stats=app.state.request_stats)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api.max_request_bytes, uploads=uploads)
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(QueryCaseMiddleware)
    # Outermost: every response, including a crash anywhere inside, gets the correlation id.
    app.add_middleware(CorrelationIdMiddleware)
    return app
