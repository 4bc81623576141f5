"""The event bus: `POST /events/publish`, `GET /events` (docs/api.md "Approvals, routing rules and events")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from serve_app.schemas.common import PaginationInfo, PaginationLinks, RequestModel, ResponseModel
from services.events import EVENT_NAME, RESERVED_PREFIXES

# What `_name` below accepts, for the OpenAPI: an event name (EVENT_NAME) not under a reserved prefix.
EVENT_TYPE_PATTERN = rf"^(?!({'|'.join(sorted(RESERVED_PREFIXES))})\.){EVENT_NAME.pattern.removeprefix('^')}"


class EventPublish(RequestModel):
    event_type: str = Field(
        max_length=100,
        description="dotted lowercase words, e.g. deployment.completed",
        json_schema_extra={"pattern": EVENT_TYPE_PATTERN},
    )
    source_agent: str | None = Field(None, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)
    task_id: str | None = Field(None, max_length=64)
    trace_id: str | None = Field(None, max_length=128)
    priority: str | None = Field(None, max_length=16)

    @field_validator("event_type")
    @classmethod
    def _name(cls, value: str) -> str:
        if not EVENT_NAME.match(value):
            raise ValueError("dotted lowercase words, e.g. deployment.completed")
        if value.partition(".")[0] in RESERVED_PREFIXES:
            raise ValueError(f"'{value.partition('.')[0]}.' events are the platform's own")
        return value


class EventOut(ResponseModel):
    id: str
    event_type: str
    source: str
    source_agent: str = Field(description="the same as `source` (the name some clients use)")
    payload: dict[str, Any]
    task_id: str | None = Field(description="the task the event is about, if any")
    trace_id: str | None
    priority: str | None = Field(None, description="the priority published with the event, or its task's")
    timestamp: datetime


class PublishedEvent(ResponseModel):
    success: bool = True
    event_id: str
    event_type: str
    message: str
    event: EventOut


class EventList(ResponseModel):
    events: list[EventOut]
    pagination: PaginationInfo
    links: PaginationLinks
