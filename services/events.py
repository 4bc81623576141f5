"""Domain events into the outbox (ARCHITECTURE "Durability rules").

An event is a row written in the same transaction as the change that caused it, so that an event
exists exactly when its change does. Fan-out (WebSocket, webhooks, the Redis stream) reads the outbox
and marks rows `published_at`; consumers de-duplicate by the event id.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from persistence.base import OwnedMixin
from persistence.models import Event
from serve_app.request_context import correlation_id_var

# API.md "Event names": dotted lowercase words.
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


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
    correlation_id = correlation_id_var.get()
    event = Event(
        event_type=event_type,
        source=source,
        data=data,
        owner_type=owner.owner_type if owner is not None else None,
        owner_id=owner.owner_id if owner is not None else None,
        subject_id=subject_id,
        correlation_id=None if correlation_id == "-" else correlation_id,
    )
    session.add(event)
    return event
