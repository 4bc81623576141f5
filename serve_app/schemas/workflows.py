"""Workflows and executions (docs/api.md "Workflows and executions"): one schema each, snake_case out,
camelCase accepted in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, ConfigDict, Field, StrictBool, computed_field, field_validator

from serve_app.schemas.common import PaginationInfo, PaginationLinks, RequestModel, ResponseModel, not_nullable


class WorkflowCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=20_000)
    workflow_data: dict[str, Any] = Field(description="{nodes, edges, settings}")
    workflow_type: str = Field("visual", pattern="(?i)^(visual|code)$")
    framework: str | None = Field(None, max_length=32)
    is_active: StrictBool = True

    @field_validator("workflow_type")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class WorkflowUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra=not_nullable("name", "workflow_data", "workflow_type", "is_active"))

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=20_000)
    workflow_data: dict[str, Any] | None = None
    workflow_type: str | None = Field(None, pattern="(?i)^(visual|code)$")
    framework: str | None = Field(None, max_length=32)
    is_active: StrictBool | None = None


class WorkflowOut(ResponseModel):
    id: str
    agent_id: str
    name: str
    description: str | None
    workflow_data: dict[str, Any]
    workflow_type: str
    framework: str | None
    version: str
    is_active: bool
    owner_type: str
    owner_id: str
    created_at: datetime
    updated_at: datetime


class WorkflowList(ResponseModel):
    workflows: list[WorkflowOut]
    pagination: PaginationInfo
    links: PaginationLinks


class WorkflowVersionOut(ResponseModel):
    id: str
    workflow_id: str
    version: str
    name: str
    workflow_data: dict[str, Any]
    created_by: str | None
    created_at: datetime


class WorkflowVersionList(ResponseModel):
    versions: list[WorkflowVersionOut]


class Resources(RequestModel):
    cpu: float | None = Field(None, ge=0, le=1024)
    memory: float | None = Field(None, ge=0, le=16 * 1024 * 1024, description="MB")
    gpu: float | None = Field(None, ge=0, le=64)


class ExecutionOptions(RequestModel):
    timeout: int | None = Field(None, ge=1, le=7 * 24 * 3600 * 1000, description="milliseconds")
    retry_count: int | None = Field(None, ge=0, le=20)
    resources: Resources | None = None


class ExecuteRequest(RequestModel):
    input_data: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("input_data", "inputData", "input")
    )
    execution_options: ExecutionOptions = Field(default_factory=ExecutionOptions)
    trigger: str = Field("manual", pattern="(?i)^(manual|scheduled|webhook|api|task)$")
    environment: str = Field("development", pattern="(?i)^(development|staging|production)$")


class StartExecution(RequestModel):
    """`POST /executions`: run the agent's active workflow."""

    agent_id: str = Field(max_length=64)
    input: dict[str, Any] = Field(default_factory=dict)
    configuration: dict[str, Any] = Field(default_factory=dict)
    environment: str = Field("development", pattern="(?i)^(development|staging|production)$")
    trigger: str = Field("manual", pattern="(?i)^(manual|scheduled|webhook|api)$")
    execution_options: ExecutionOptions = Field(default_factory=ExecutionOptions)


class ExecutionStarted(ResponseModel):
    execution_id: str
    status: str
    started_at: datetime | None
    created_at: datetime
    correlation_id: str | None
    workflow_id: str | None
    workflow_version: str
    message: str = "Execution started"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return self.execution_id


class StepOut(ResponseModel):
    seq: int
    node_id: str
    node_type: str
    attempt: int
    status: str
    input: dict[str, Any] | None
    output: dict[str, Any] | None
    error: str | None
    idempotency_key: str
    started_at: datetime
    completed_at: datetime | None
    duration_ms: float | None


class LogOut(ResponseModel):
    id: str
    level: str
    message: str
    node_id: str | None
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("meta", "metadata"))
    timestamp: datetime = Field(validation_alias=AliasChoices("created_at", "timestamp"))


class ExecutionOut(ResponseModel):
    id: str
    workflow_id: str | None
    workflow_version: str
    agent_id: str | None
    task_id: str | None
    status: str
    input: dict[str, Any]
    output: dict[str, Any] | None
    error: str | None
    progress: float
    current_step: str | None
    tokens_used: int
    cost: float
    trigger: str
    environment: str
    resource_usage: dict[str, Any]
    waiting_on: dict[str, Any] | None
    correlation_id: str | None
    resumes: int
    actor_name: str | None
    owner_type: str
    owner_id: str
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None = Field(serialization_alias="duration")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def execution_id(self) -> str:
        return self.id


class ExecutionDetail(ExecutionOut):
    steps: list[StepOut] = Field(default_factory=list)
    logs: list[LogOut] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def execution_data(self) -> dict[str, Any]:
        """Input, output and steps grouped in one object, the shape some clients read."""
        return {"input": self.input, "output": self.output, "steps": [step.model_dump() for step in self.steps]}


class ExecutionList(ResponseModel):
    executions: list[ExecutionOut]
    pagination: PaginationInfo
    links: PaginationLinks


class LogPage(ResponseModel):
    logs: list[LogOut]
    pagination: dict[str, Any]


class CodeBundleOut(ResponseModel):
    sha256: str
    size: int
    python: str = Field(description="the Python (major.minor) it was pickled with; run actors need the same")
    functions: list[str]
    created_at: datetime
