"""The event bus (docs/api.md "Events"): publish a custom event, list the events you may see, and the
public queue statistics of `GET /stats`. Domain events are written by the changes that cause them; the
event hub's relay (actors/event_hub.py) mirrors every event to the Redis stream `orchestrator:events`
when Redis is configured.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response, status

from core.clock import isoformat_z, utcnow
from persistence.models import Event
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import PageParams, QueryTime, in_utc, page_params, paginated
from serve_app.routing import protected_router, public_router
from serve_app.schemas.events import EventList, EventOut, EventPublish, PublishedEvent
from services import events, tasks
from services.principal import Role

router = protected_router(prefix="/events", tags=["events"], resource="events", write_role=Role.agent)
stats_root = public_router(tags=["stats"])
stats_router = public_router(tags=["stats"])


def event_out(event: Event) -> EventOut:
    priority = event.data.get("priority") if isinstance(event.data, dict) else None
    return EventOut(
        id=event.id,
        event_type=event.event_type,
        source=event.source,
        source_agent=event.source,
        payload=event.data,
        task_id=events.task_id_of(event),
        trace_id=event.correlation_id,
        priority=priority if isinstance(priority, str) else None,
        timestamp=event.created_at,
    )


@router.post("/publish", status_code=status.HTTP_201_CREATED, response_model=PublishedEvent)
def publish_event(body: EventPublish, principal: CurrentPrincipal, context: Context, response: Response) -> dict:
    """Publish an event for other agents and subscribers; `trace_id` defaults to the request's
    correlation id."""
    with context.db.transaction() as session:
        event = events.publish(session, principal, body.model_dump())
        out = event_out(event)
    # The trace id is the client's text: quoted, so that any character it holds makes a valid header.
    query = f"?{urlencode({'trace_id': out.trace_id})}" if out.trace_id else ""
    response.headers["Location"] = f"/api/v1/events{query}"
    return {"event_id": out.id, "event_type": out.event_type, "message": "Event published successfully", "event": out}


@router.get("", response_model=EventList)
def list_events(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    type: Annotated[str | None, Query(max_length=100, description="event type, e.g. task.assigned")] = None,
    event_type: Annotated[
        str | None, Query(max_length=100, description="the same as `type` (the name some clients use)")
    ] = None,
    source: Annotated[str | None, Query(max_length=100)] = None,
    source_agent: Annotated[str | None, Query(max_length=100, description="the same as `source`")] = None,
    task_id: Annotated[str | None, Query(max_length=64)] = None,
    trace_id: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[QueryTime | None, Query(description="ISO timestamp with zone")] = None,
) -> dict:
    """Events about what you own (and your organizations own), newest first; admins see all."""
    [since] = in_utc(since)
    with context.db.session() as session:
        page = events.list_events(
            session,
            principal,
            page=params.page,
            limit=params.limit,
            event_type=type or event_type,
            source=source or source_agent,
            task_id=task_id,
            trace_id=trace_id,
            since=since,
        )
        items = [event_out(event) for event in page.items]
    return paginated(request, "events", items, page)


def _stats(context: Context) -> dict:
    with context.db.session() as session:
        queue = tasks.queue_stats(session)
    router = context.actors.router.stats(timeout_s=2.0)
    return {"queue": queue, "router": router, "timestamp": isoformat_z(utcnow())}


_STATS_DOC = {
    "summary": "Queue statistics (public)",
    "description": "Task counts by state from the database, and the live router's queues when it answers.",
}
stats_root.add_api_route("/stats", _stats, methods=["GET"], **_STATS_DOC)
stats_router.add_api_route("/stats", _stats, methods=["GET"], operation_id="api_stats", **_STATS_DOC)
