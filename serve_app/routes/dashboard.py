"""The dashboard (docs/api.md "Dashboard"): figures for a timeframe against the one before it, computed from
recorded executions, agents and configurations, over what the caller may see. `GET /dashboard/real-time`
streams the same overview as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import StreamingResponse

from serve_app.deps import Context, CurrentPrincipal
from serve_app.routing import protected_router
from serve_app.schemas.workflows import ExecutionOut
from services import dashboard

router = protected_router(prefix="/dashboard", tags=["dashboard"], resource="dashboard")
REAL_TIME_EVERY_S = 2.0


def _metrics(context: Context, principal: CurrentPrincipal, timeframe: str) -> dict[str, Any]:
    with context.db.session() as session:
        figures = dashboard.metrics(session, principal, timeframe)
        figures["recent_activity"] = [
            ExecutionOut.model_validate(run).model_dump(mode="json", by_alias=True)
            for run in figures["recent_activity"]
        ]
    return figures


@router.get("/metrics")
def dashboard_metrics(
    principal: CurrentPrincipal,
    context: Context,
    timeframe: Annotated[str, Query(pattern="^(24[hH]|7[dD]|30[dD]|90[dD])$")] = "30d",
) -> dict[str, Any]:
    """Overview values with their change and trend against the previous period, execution trends (per hour
    for 24h, per day otherwise), the framework distribution, performance, and the latest executions. The
    period is the last 30 days unless `timeframe` says otherwise (any case)."""
    return _metrics(context, principal, timeframe.lower())


@router.get(
    "/real-time",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def dashboard_real_time(
    principal: CurrentPrincipal,
    context: Context,
    timeframe: Annotated[str, Query(pattern="^(24[hH]|7[dD]|30[dD]|90[dD])$")] = "30d",
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events: a `metrics` event with the dashboard now, then whenever it changes (checked every
    2 s). Event ids count up from `Last-Event-ID`."""
    try:
        sequence = int(last_event_id or 0)
    except ValueError:
        sequence = 0

    async def events() -> AsyncIterator[bytes]:
        nonlocal sequence
        last = None
        while True:
            figures = await asyncio.to_thread(_metrics, context, principal, timeframe.lower())
            comparable = {k: v for k, v in figures.items() if k != "period"}
            if comparable != last:
                last = comparable
                sequence += 1
                yield f"id: {sequence}\nevent: metrics\ndata: {json.dumps(figures, default=str)}\n\n".encode()
            await asyncio.sleep(REAL_TIME_EVERY_S)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
