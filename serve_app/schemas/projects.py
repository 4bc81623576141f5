"""Projects (docs/api.md "Tasks, projects and notifications"): a team, tasks, and figures derived from the tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, ConfigDict, Field, field_validator

from serve_app.schemas.common import PaginationInfo, PaginationLinks, RequestModel, ResponseModel, not_nullable
from serve_app.schemas.tasks import any_priority
from services.projects import parse_status


def _status(value: object) -> object:
    return parse_status(value) if isinstance(value, str) else value


class MemberIn(RequestModel):
    user_id: str = Field(min_length=1, max_length=64)
    role: str = Field("member", min_length=1, max_length=50)
    permissions: list[str] = Field(default_factory=list, max_length=50)


class Budget(RequestModel):
    hours: float | None = Field(None, ge=0)
    cost: float | None = Field(None, ge=0)
    currency: str | None = Field(None, max_length=3)


class ProjectCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=20_000)
    status: str = "active"
    priority: str = Field("P2", description="P0-P3, critical/high/medium/low, or 1-10")
    start_date: datetime | None = None
    end_date: datetime | None = None
    budget: Budget | None = None
    team_members: list[MemberIn] = Field(default_factory=list, max_length=200)
    agents: list[str] = Field(default_factory=list, max_length=200, description="agent ids")
    tags: list[str] = Field(default_factory=list, max_length=50)
    owner_type: str | None = Field(None, pattern="(?i)^(user|organization)$")
    owner_id: str | None = Field(None, max_length=64)

    _priority = field_validator("priority", mode="before")(any_priority)
    _status = field_validator("status", mode="before")(_status)


class ProjectUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra=not_nullable("name", "status", "priority", "budget", "tags"))

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=20_000)
    status: str | None = None
    priority: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    budget: Budget | None = None
    agents: list[str] | None = Field(None, max_length=200)
    tags: list[str] | None = Field(None, max_length=50)

    _priority = field_validator("priority", mode="before")(any_priority)
    _status = field_validator("status", mode="before")(_status)


class MemberOut(ResponseModel):
    project_id: str
    user_id: str
    role: str
    permissions: list[str]
    added_at: datetime


class TaskCount(ResponseModel):
    total: int
    completed: int
    active: int
    pending: int
    failed: int
    cancelled: int


class ProjectOut(ResponseModel):
    id: str
    name: str
    description: str | None
    status: str
    priority: str
    start_date: datetime | None
    end_date: datetime | None
    budget: dict[str, Any]
    tags: list[str]
    agents: list[str] = Field(validation_alias=AliasChoices("agent_ids", "agents"))
    owner_type: str
    owner_id: str
    created_by: str | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    members: list[MemberOut]
    progress: float = 0.0
    task_count: TaskCount | None = None
    team_size: int = 0
    assigned_agents: int = 0


class ProjectList(ResponseModel):
    projects: list[ProjectOut]
    pagination: PaginationInfo
    links: PaginationLinks
