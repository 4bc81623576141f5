"""Agents and configurations: one superset schema, taking the fields that different clients send
(docs/api.md "Agents")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, WithJsonSchema, computed_field, field_validator

from serve_app.schemas.common import (
    PaginationInfo,
    PaginationLinks,
    RequestModel,
    ResponseModel,
    names_its_organization,
    not_nullable,
)
from services.agents import FRAMEWORKS, validate_framework

OwnerType = Literal["user", "organization"]
# One of the frameworks an agent may name, as the OpenAPI lists them (validate_framework reads any case first).
Framework = Literal[FRAMEWORKS]  # type: ignore[valid-type]
# A capability, specialization or tag: 1-64 characters once stripped (checked by `_labels`, 422 naming the list).
LABEL_MAX_LENGTH = 64
Label = Annotated[str, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": LABEL_MAX_LENGTH})]


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _framework(value: object) -> object:
    return validate_framework(value) if isinstance(value, str) else value


def _labels(values: list[str] | None) -> list[str] | None:
    """Each label once, in the order given; each 1-LABEL_MAX_LENGTH characters once stripped."""
    if values is None:
        return None
    cleaned = []
    for value in values:
        label = value.strip()
        if not label or len(label) > LABEL_MAX_LENGTH:
            raise ValueError(f"each entry must be 1-{LABEL_MAX_LENGTH} characters")
        if label not in cleaned:
            cleaned.append(label)
    return cleaned


class ResourceLimits(RequestModel):
    cpu: float = Field(1.0, gt=0, le=512, description="CPU cores")
    memory: int = Field(512, gt=0, le=4_194_304, description="MB")
    gpu: float = Field(0, ge=0, le=64)
    network_isolation: str | None = None


class AgentFields(RequestModel):
    """Fields a client may set on create and update (status changes only through deploy/undeploy)."""

    description: str | None = Field(None, max_length=5000)
    framework: Framework | None = None
    agent_type: Literal["visual", "code"] | None = None
    mode: Literal["hosted", "external"] | None = None
    type: str | None = Field(None, max_length=32, description="role in routing: coding, analysis, ops …")
    capabilities: list[Label] | None = Field(None, max_length=100)
    specializations: list[Label] | None = Field(None, max_length=100)
    tags: list[Label] | None = Field(None, max_length=100)
    model: str | None = Field(None, max_length=100)
    provider: str | None = Field(None, max_length=50)
    configuration: dict[str, Any] | None = None
    working_hours: dict[str, Any] | None = None
    max_concurrent_tasks: int | None = Field(None, ge=1, le=1000)
    resource_limits: ResourceLimits | None = None
    is_active: StrictBool | None = None
    is_public: StrictBool | None = None
    version: str | None = Field(None, pattern=r"^\d+\.\d+\.\d+$")

    _framework = field_validator("framework", mode="before")(_framework)
    _lower = field_validator("agent_type", "mode", "type", mode="before")(_lower)
    _labels = field_validator("capabilities", "specializations", "tags")(_labels)


class AgentCreate(AgentFields):
    model_config = ConfigDict(json_schema_extra=names_its_organization)

    name: str = Field(min_length=1, max_length=100)
    owner_type: OwnerType | None = None
    owner_id: str | None = Field(None, max_length=64)
    configuration_id: str | None = Field(None, description="a saved configuration or template to start from")

    _owner = field_validator("owner_type", mode="before")(_lower)


class AgentUpdate(AgentFields):
    model_config = ConfigDict(
        json_schema_extra=not_nullable(
            "framework",
            "agent_type",
            "mode",
            "capabilities",
            "specializations",
            "tags",
            "configuration",
            "max_concurrent_tasks",
            "resource_limits",
            "is_active",
            "is_public",
            "version",
            "name",
        )
    )

    name: str | None = Field(None, min_length=1, max_length=100)


class AgentToggle(RequestModel):
    reason: str | None = Field(None, max_length=500)


class AgentOut(ResponseModel):
    id: str
    name: str
    description: str | None
    owner_type: str
    owner_id: str
    is_public: bool
    framework: str
    agent_type: str
    mode: str
    type: str | None
    capabilities: list[str]
    specializations: list[str]
    tags: list[str]
    model: str | None
    provider: str | None
    configuration: dict[str, Any]
    configuration_id: str | None
    working_hours: dict[str, Any] | None
    max_concurrent_tasks: int
    current_tasks: int
    resource_limits: dict[str, Any]
    status: str
    is_active: bool
    disabled_reason: str | None
    version: str
    total_executions: int
    successful_executions: int
    avg_execution_time: float | None
    last_executed_at: datetime | None
    deployed_at: datetime | None
    undeployed_at: datetime | None
    # Why it is `deploying` (waiting for resources) or in `error`.
    status_message: str | None
    # Its Ray actor (the agent's "container"); while idle it holds no process (`passivated_at`).
    container_id: str | None
    passivated_at: datetime | None
    # External agents: the worker's last heartbeat and whether it is recent enough (None: hosted).
    last_heartbeat_at: datetime | None
    online: bool | None = None
    created_at: datetime
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def success_rate(self) -> float | None:
        return self.successful_executions / self.total_executions if self.total_executions else None


class DeployResponse(ResponseModel):
    """The answer of `POST /agents/{id}/deploy`, plus the agent."""

    id: str
    status: str
    container_id: str | None
    deployed_at: datetime | None
    status_message: str | None
    deployment_logs: list[str]
    agent: AgentOut


class UndeployResponse(ResponseModel):
    id: str
    status: str
    undeployed_at: datetime | None


class HeartbeatResponse(ResponseModel):
    id: str
    online: bool
    last_heartbeat_at: datetime


class ContainerUsage(ResponseModel):
    cpu_percent: float | None
    memory_usage: float | None = Field(description="MB resident")
    memory_limit: int | float | None = Field(None, description="MB, from resource_limits")


class ContainerOut(ResponseModel):
    """An agent's container (the agents API's word): its Ray actor as Ray's state API and the actor itself
    report it."""

    container_id: str | None
    actor_name: str
    agent_status: str
    status: str = Field(description="running | pending | restarting | passivated | stopped | missing | dead")
    ray_state: str | None = None
    node_id: str | None = None
    pid: int | None = None
    restarts: int | None = None
    started_at: datetime | None = None
    passivated_at: datetime | None = None
    required_resources: dict[str, float] | None = None
    resource_usage: ContainerUsage
    health_status: str = Field(description="healthy | unhealthy | none (no process)")
    health_message: str | None = None
    last_health_check: datetime | None
    agent: dict[str, Any] | None = Field(None, description="what the actor has loaded and is doing")


class RestartResponse(ResponseModel):
    container_id: str
    status: str
    restarted_at: datetime


class LogEntry(ResponseModel):
    timestamp: datetime | None
    level: str
    message: str
    source: str


class LogsResponse(ResponseModel):
    logs: list[LogEntry]


class AgentList(ResponseModel):
    agents: list[AgentOut]
    pagination: PaginationInfo
    links: PaginationLinks


class ConfigurationCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra=names_its_organization)

    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(None, max_length=5000)
    framework: Framework = "native"
    configuration: dict[str, Any]  # required: a save is of a configuration (an empty one is `{}`, said so)
    is_template: StrictBool = False
    is_public: StrictBool = False
    owner_type: OwnerType | None = None
    owner_id: str | None = Field(None, max_length=64)

    _framework = field_validator("framework", mode="before")(_framework)
    _owner = field_validator("owner_type", mode="before")(_lower)


class ConfigurationUpdate(RequestModel):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=5000)
    framework: Framework | None = None
    configuration: dict[str, Any] | None = None
    is_template: StrictBool | None = None
    is_public: StrictBool | None = None

    _framework = field_validator("framework", mode="before")(_framework)


class ConfigurationOut(ResponseModel):
    id: str
    name: str
    description: str | None
    framework: str
    configuration: dict[str, Any]
    is_template: bool
    is_public: bool
    usage_count: int
    owner_type: str
    owner_id: str
    created_at: datetime
    updated_at: datetime


class ConfigurationList(ResponseModel):
    configurations: list[ConfigurationOut]
    pagination: PaginationInfo
    links: PaginationLinks
