"""Tasks: the routing fields and the project fields that different clients send, in one schema (docs/api.md
"Tasks, projects and notifications")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, ConfigDict, Field, WithJsonSchema, computed_field, field_validator

from schedulers.task_lifecycle import (
    PRIORITY_NUMBERS,
    PRIORITY_WORDS,
    SYNONYMS,
    TaskStatus,
    parse_priority,
    parse_status,
)
from serve_app.pagination import words_pattern
from serve_app.schemas.common import (
    PaginationInfo,
    PaginationLinks,
    RequestModel,
    ResponseModel,
    names_its_organization,
    not_nullable,
)
from services.tasks import REPORTABLE

TASK_TYPE = r"^[a-z][a-z0-9_.-]{0,63}$"


def any_priority(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 7.0 is the JSON integer 7, as JSON Schema reads it
    return parse_priority(value) if isinstance(value, str | int) else value


# A priority in a request body: whatever parse_priority reads (P0-P3, critical/urgent/high/medium/normal/low or
# 1-10, in any case, or the number 1-10), as P0-P3. The OpenAPI states the same, from the same lists.
Priority = Annotated[
    str,
    BeforeValidator(any_priority),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": words_pattern(PRIORITY_WORDS)},
                {"type": "integer", "minimum": PRIORITY_NUMBERS[0], "maximum": PRIORITY_NUMBERS[-1]},
            ]
        }
    ),
]


class TaskCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra=names_its_organization)

    title: str | None = Field(None, min_length=1, max_length=300)
    description: str | None = Field(None, max_length=20_000)
    type: str = Field("general", pattern=TASK_TYPE, description="routing type: bugfix, feature, deployment …")
    priority: Priority = Field("P2", description="P0-P3, critical/high/medium/low, or 1-10")
    agent_id: str | None = Field(None, max_length=64, description="assign to this agent directly")
    project_id: str | None = Field(None, max_length=64)
    source: str | None = Field(None, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict, description="the task's input")
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, max_length=50)
    requirements: list[str] = Field(default_factory=list, max_length=100)
    acceptance_criteria: list[str] = Field(default_factory=list, max_length=100)
    estimated_hours: float | None = Field(None, ge=0, le=100_000)
    due_date: datetime | None = None
    sla_target: int | None = Field(None, ge=1, le=365 * 24 * 3600, description="seconds from creation")
    owner_type: str | None = Field(None, pattern="(?i)^(user|organization)$")
    owner_id: str | None = Field(None, max_length=64)

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


# A status report (`PATCH /tasks/{id}/status`, its query or its body): a status a report may name (REPORTABLE), in
# any spelling parse_status reads for it.
REPORTED_STATUS = words_pattern([*REPORTABLE, *(word for word, status in SYNONYMS.items() if status in REPORTABLE)])


class TaskStatusUpdate(RequestModel):
    """Some clients send these as query parameters; a JSON body works too."""

    # Another status is refused by the report itself (422 naming `status`), after the task is found.
    status: Annotated[TaskStatus, WithJsonSchema({"type": "string", "pattern": REPORTED_STATUS})]
    error: str | None = Field(None, max_length=10_000)
    result: dict[str, Any] | None = None
    progress: float | None = Field(None, ge=0, le=1)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: object) -> object:
        return parse_status(value) if isinstance(value, str) else value


class TaskOut(ResponseModel):
    id: str
    title: str
    description: str | None
    type: str
    priority: str
    status: str
    agent_id: str | None
    project_id: str | None
    source: str | None
    payload: dict[str, Any]
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("meta", "metadata"))
    tags: list[str]
    requirements: list[str]
    acceptance_criteria: list[str]
    result: dict[str, Any] | None
    error: str | None
    estimated_hours: float | None
    actual_hours: float | None
    progress: float
    tokens_used: int = Field(0, description="tokens a framework agent's model calls used on it")
    cost: float = Field(0.0, description="their price (the agent's `configuration.llm.cost_per_1k_tokens`)")
    sla_target: int | None
    sla_breached_at: datetime | None = None
    due_date: datetime | None
    owner_type: str
    owner_id: str
    created_by: str | None
    assigned_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def task_id(self) -> str:
        """The id, under the name some clients use."""
        return self.id

    @computed_field  # type: ignore[prop-decorator]
    @property
    def assigned_agent(self) -> str | None:
        """The agent's id, under the name some clients use."""
        return self.agent_id

    @computed_field  # type: ignore[prop-decorator]
    @property
    def agents(self) -> dict[str, str] | None:
        """A requirement's pipeline: who does each role (an agent's name, or `builtin-<role>`)."""
        return (self.metadata.get("pipeline") or {}).get("agents")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def results(self) -> dict[str, Any] | None:
        """A requirement's pipeline: each finished stage's answer (analysis, implementation, validation,
        integration)."""
        pipeline = self.metadata.get("pipeline")
        return pipeline.get("results", {}) if pipeline else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def stage(self) -> str | None:
        """A requirement's pipeline: the stage at work (`completed` once it ended)."""
        pipeline = self.metadata.get("pipeline")
        if not pipeline:
            return None
        return "completed" if self.status == "completed" else pipeline.get("stage")


class TaskList(ResponseModel):
    tasks: list[TaskOut]
    pagination: PaginationInfo
    links: PaginationLinks


class TaskStatusOut(ResponseModel):
    task_id: str
    status: str
    task: TaskOut


class AgentMetrics(ResponseModel):
    agent_id: str
    period: dict[str, datetime]
    task_metrics: dict[str, Any]
    performance_metrics: dict[str, Any]
    utilization_metrics: dict[str, Any]
    execution_metrics: dict[str, Any]


class TaskUpdate(RequestModel):
    """PUT and PATCH change the fields given; `status` goes through the state machine."""

    model_config = ConfigDict(
        json_schema_extra=not_nullable(
            "title",
            "type",
            "priority",
            "status",
            "payload",
            "metadata",
            "tags",
            "requirements",
            "acceptance_criteria",
            "progress",
        )
    )

    title: str | None = Field(None, min_length=1, max_length=300)
    description: str | None = Field(None, max_length=20_000)
    type: str | None = Field(None, pattern=TASK_TYPE)
    priority: Priority | None = None
    status: TaskStatus | None = None
    project_id: str | None = Field(None, max_length=64)
    payload: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = Field(None, max_length=50)
    requirements: list[str] | None = Field(None, max_length=100)
    acceptance_criteria: list[str] | None = Field(None, max_length=100)
    estimated_hours: float | None = Field(None, ge=0, le=100_000)
    actual_hours: float | None = Field(None, ge=0, le=100_000)
    progress: float | None = Field(None, ge=0, le=1)
    due_date: datetime | None = None
    sla_target: int | None = Field(None, ge=1, le=365 * 24 * 3600)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: object) -> object:
        return parse_status(value) if isinstance(value, str) else value


class TaskAssign(RequestModel):
    agent_id: str = Field(max_length=64)


class TaskHistoryEntry(ResponseModel):
    id: str
    action: str
    from_: str | None = Field(None, serialization_alias="from")
    to: str | None
    user: str | None = None  # who made the change: a person, or the identity an agent reported with
    timestamp: datetime
    correlation_id: str | None


class TaskMetrics(ResponseModel):
    time_spent: float | None = Field(description="hours from start to completion (or now)")
    completion_rate: float
    wait_time: float | None = Field(description="hours from creation to assignment")


class CommentCreate(RequestModel):
    content: str = Field(min_length=1, max_length=20_000)
    mentions: list[str] = Field(default_factory=list, max_length=50, description="user ids or emails")


class CommentOut(ResponseModel):
    id: str
    task_id: str
    content: str
    author: str = Field(validation_alias=AliasChoices("author_id", "author"))
    mentions: list[str]
    created_at: datetime


class FileOut(ResponseModel):
    id: str
    task_id: str
    name: str
    description: str | None
    mime_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def download_url(self) -> str:
        return f"/api/v1/tasks/{self.task_id}/files/{self.id}"


class CommentList(ResponseModel):
    comments: list[CommentOut]
    pagination: PaginationInfo
    links: PaginationLinks


class FileList(ResponseModel):
    files: list[FileOut]
    pagination: PaginationInfo
    links: PaginationLinks


class TaskDetail(TaskOut):
    comments: list[CommentOut] | None = None
    files: list[FileOut] | None = None
    history: list[TaskHistoryEntry] | None = None
    metrics: TaskMetrics | None = None
