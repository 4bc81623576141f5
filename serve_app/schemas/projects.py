"""Projects (docs/api.md "Tasks, projects and notifications"): a team, tasks, and figures derived from the tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, ConfigDict, Field

from serve_app.pagination import words_pattern
from serve_app.schemas.common import (
    PaginationInfo,
    PaginationLinks,
    RequestModel,
    ResponseModel,
    names_its_organization,
    not_nullable,
)
from serve_app.schemas.tasks import Priority
from services.projects import STATUS_SPELLINGS, parse_status


def _status(value: object) -> object:
    return parse_status(value) if isinstance(value, str) else value


# A project's status as parse_status reads it (any case, `on_hold` for `on-hold`), stored as one of STATUSES.
ProjectStatus = Annotated[str, Field(pattern=words_pattern(STATUS_SPELLINGS)), BeforeValidator(_status)]


class MemberIn(RequestModel):
    user_id: str = Field(min_length=1, max_length=64)
    role: str = Field("member", min_length=1, max_length=50)
    permissions: list[str] = Field(default_factory=list, max_length=50)


class Budget(RequestModel):
    hours: float | None = Field(None, ge=0)
    cost: float | None = Field(None, ge=0)
    currency: str | None = Field(None, max_length=3)


class ProjectCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra=names_its_organization)

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=20_000)
    status: ProjectStatus = "active"
    priority: Priority = Field("P2", description="P0-P3, critical/high/medium/low, or 1-10")
    start_date: datetime | None = None
    end_date: datetime | None = None
    budget: Budget | None = None
    team_members: list[MemberIn] = Field(default_factory=list, max_length=200)
    agents: list[str] = Field(default_factory=list, max_length=200, description="agent ids")
    tags: list[str] = Field(default_factory=list, max_length=50)
    owner_type: str | None = Field(None, pattern="(?i)^(user|organization)$")
    owner_id: str | None = Field(None, max_length=64)


class ProjectUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra=not_nullable("name", "status", "priority", "budget", "agents", "tags"))

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=20_000)
    status: ProjectStatus | None = None
    priority: Priority | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    budget: Budget | None = None
    agents: list[str] | None = Field(None, max_length=200)
    tags: list[str] | None = Field(None, max_length=50)


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
