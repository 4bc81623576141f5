"""Domain events into the outbox (ARCHITECTURE "Durability rules").

An event is a row written in the same transaction as the change that caused it, so that an event
exists exactly when its change does. Fan-out (WebSocket, webhooks, the Redis stream) reads the outbox
and marks rows `published_at`; consumers de-duplicate by the event id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, or_, select, text, update
from sqlalchemy.orm import Session

from core.clock import isoformat_z, utcnow
from core.context import correlation_id_var
from core.ids import new_id
from persistence.base import OwnedMixin
from persistence.models import UNSTREAMED, Event
from persistence.repositories.pages import Page, fetch_page
from persistence.repositories.statements import prepared_insert
from services.organizations import member_organization_ids
from services.principal import Principal

# Event names (docs/api.md "Events"): dotted lowercase words.
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
# An event pattern: "*", or dotted lowercase words followed by ".*" ("task.*", "execution.*").
_PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.\*$")


def is_event_pattern(pattern: str) -> bool:
    """An event name, `*` or `prefix.*` (webhook `events`, WebSocket `events` filters)."""
    return pattern == "*" or bool(EVENT_NAME.match(pattern) or _PREFIX_PATTERN.match(pattern))


def event_matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether `event_type` matches any of the patterns."""
    return any(
        pattern in ("*", event_type) or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
        for pattern in patterns
    )


# Names only the platform emits: a published custom event may not pass for a system health report, a
# notification or a webhook test. (Agents may publish task and deployment events of their own.)
RESERVED_PREFIXES = frozenset({"system", "notification", "webhook"})


# Events of these domains are about something other than a task (a run, an agent, an approval, a project, a
# user …): the task they concern, if any, is their payload's `task_id`. Every other event's subject is its
# task (task events, and the `task_id` a published event names).
_NOT_ABOUT_A_TASK = frozenset({"execution", "agent", "approval", "marketplace", "project", "user", *RESERVED_PREFIXES})


def task_id_of(event: Event | Row) -> str | None:
    """The task an event is about (the `task_id` of `GET /events`), or None."""
    if event.event_type.partition(".")[0] in _NOT_ABOUT_A_TASK:
        task_id = event.data.get("task_id") if isinstance(event.data, dict) else None
        return task_id if isinstance(task_id, str) else None
    return event.subject_id


def emit(
    session: Session,
    event_type: str,
    data: dict[str, Any],
    *,
    source: str,
    owner: OwnedMixin | None = None,
    subject_id: str | None = None,
) -> Event:
    """Add an event to the caller's transaction. `owner` scopes who may receive it (None: admins)."""
    if not EVENT_NAME.match(event_type):
        raise ValueError(f"event names are dotted lowercase words, not {event_type!r}")
    event = Event(
        event_type=event_type,
        source=source,
        data=data,
        owner_type=owner.owner_type if owner is not None else None,
        owner_id=owner.owner_id if owner is not None else None,
        subject_id=subject_id,
        correlation_id=current_correlation_id(),
    )
    session.add(event)
    return event


def current_correlation_id() -> str | None:
    """The request's (or message's) correlation id, None outside of one."""
    correlation_id = correlation_id_var.get()
    return None if correlation_id == "-" else correlation_id


def emit_now(
    session: Session,
    event_type: str,
    data: dict[str, Any],
    *,
    source: str,
    owner: Any,
    subject_id: str,
    correlation_id: str | None,
) -> None:
    """`emit` as one INSERT statement, without the ORM's unit of work: for hot paths (a run's steps)."""
    session.execute(
        _INSERT_EVENT,
        row_of(event_type, data, source=source, owner=owner, subject_id=subject_id, correlation_id=correlation_id),
    )


def emit_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Many events (`row_of`) as one prepared INSERT: for a group of new rows written at once."""
    session.execute(_INSERT_EVENT, rows)


def row_of(
    event_type: str, data: dict[str, Any], *, source: str, owner: Any, subject_id: str, correlation_id: str | None
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "event_type": event_type,
        "source": source,
        "data": data,
        "owner_type": owner.owner_type,
        "owner_id": owner.owner_id,
        "subject_id": subject_id,
        "correlation_id": correlation_id,
        "created_at": utcnow(),
    }


_INSERT_EVENT = prepared_insert(
    Event,
    "id",
    "event_type",
    "source",
    "data",
    "owner_type",
    "owner_id",
    "subject_id",
    "correlation_id",
    "created_at",
)


def publish(session: Session, principal: Principal, data: dict[str, Any]) -> Event:
    """A custom event from an agent or client (`POST /events/publish`), owned by the caller."""
    event_type = data["event_type"]
    payload = {**(data.get("payload") or {})}
    if data.get("priority"):
        payload.setdefault("priority", data["priority"])
    event = Event(
        event_type=event_type,
        source=data.get("source_agent") or f"user:{principal.user_id}",
        data=payload,
        owner_type="user",
        owner_id=principal.user_id,
        subject_id=data.get("task_id"),
        correlation_id=data.get("trace_id") or current_correlation_id(),
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session,
    principal: Principal,
    *,
    page: int,
    limit: int,
    event_type: str | None = None,
    source: str | None = None,
    task_id: str | None = None,
    trace_id: str | None = None,
    since: datetime | None = None,
) -> Page[Event]:
    """Events the caller may see: those of what they own (or their organizations own); admins see all."""
    query = select(Event)
    if not principal.is_admin:
        query = query.where(
            or_(
                and_(Event.owner_type == "user", Event.owner_id == principal.user_id),
                and_(
                    Event.owner_type == "organization", Event.owner_id.in_(member_organization_ids(principal.user_id))
                ),
            )
        )
    if event_type:
        query = query.where(Event.event_type == event_type)
    if source:
        query = query.where(Event.source == source)
    if task_id:
        query = query.where(Event.subject_id == task_id)
    if trace_id:
        query = query.where(Event.correlation_id == trace_id)
    if since is not None:
        query = query.where(Event.created_at >= since)
    return fetch_page(session, query.order_by(Event.created_at.desc(), Event.id.desc()), page=page, limit=limit)


def unpublished(session: Session, limit: int = 500) -> list[Row]:
    """The outbox's next rows to fan out, oldest first (the event's columns, without the ORM's objects:
    the relay reads them many times a second)."""
    return list(session.execute(_UNPUBLISHED, {"limit": limit}))


def mark_published(session: Session, event_ids: list[str], *, streamed: bool) -> None:
    """Fanned out; `streamed`: also in the Redis stream (or there is none), otherwise left for `unstreamed`."""
    session.execute(_MARK_PUBLISHED_STREAMED if streamed else _MARK_PUBLISHED, {"ids": event_ids, "now": utcnow()})


def unstreamed(session: Session, limit: int = 500) -> list[Row]:
    """Events fanned out while the Redis stream was unreachable, oldest first: the stream's catch-up."""
    return list(session.execute(_UNSTREAMED, {"limit": limit}))


def mark_streamed(session: Session, event_ids: list[str]) -> None:
    session.execute(_MARK_STREAMED, {"ids": event_ids, "now": utcnow()})


# Built once: the relay runs them for every batch.
_UNPUBLISHED = (
    select(
        Event.id,
        Event.event_type,
        Event.source,
        Event.data,
        Event.subject_id,
        Event.correlation_id,
        Event.owner_type,
        Event.owner_id,
        Event.created_at,
    )
    .where(Event.published_at.is_(None))
    .order_by(Event.created_at, Event.id)
    .limit(bindparam("limit"))
)
_UNSTREAMED = (
    select(*_UNPUBLISHED.selected_columns)
    .where(text(UNSTREAMED))
    .order_by(Event.created_at, Event.id)
    .limit(bindparam("limit"))
)
_BY_IDS = Event.__table__.c.id.in_(bindparam("ids", expanding=True))
_MARK_PUBLISHED = update(Event.__table__).where(_BY_IDS).values(published_at=bindparam("now"))
_MARK_PUBLISHED_STREAMED = (
    update(Event.__table__).where(_BY_IDS).values(published_at=bindparam("now"), streamed_at=bindparam("now"))
)
_MARK_STREAMED = update(Event.__table__).where(_BY_IDS).values(streamed_at=bindparam("now"))


def as_message(event: Event | Row) -> dict[str, Any]:
    """An event as the bus carries it (Redis stream entry, WebSocket message, webhook body)."""
    return {
        "id": event.id,
        "type": event.event_type,
        "source": event.source,
        "data": event.data,
        "task_id": task_id_of(event),
        "trace_id": event.correlation_id,
        "owner": f"{event.owner_type}:{event.owner_id}" if event.owner_type else None,
        "timestamp": isoformat_z(event.created_at),
    }


def live_message(event_type: str, data: dict[str, Any], *, source: str) -> dict[str, Any]:
    """A platform event that is not stored (the periodic `system.health`): admins only, like an event
    without an owner."""
    return {
        "id": new_id(),
        "type": event_type,
        "source": source,
        "data": data,
        "task_id": None,
        "trace_id": None,
        "owner": None,
        "timestamp": isoformat_z(utcnow()),
    }
