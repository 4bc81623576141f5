"""Human approvals, a human in the loop (docs/api.md "Approvals, routing rules and events")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, computed_field

from schedulers.approval_lifecycle import ApprovalStatus
from serve_app.schemas.common import (
    PaginationInfo,
    PaginationLinks,
    RequestModel,
    ResponseModel,
    names_its_organization,
)
from serve_app.schemas.tasks import Priority


class ApprovalCreate(RequestModel):
    """Gate one of your pending tasks (`task_id`), or ask for a free-standing decision."""

    model_config = ConfigDict(json_schema_extra=names_its_organization)

    task_id: str | None = Field(None, max_length=64)
    reason: str | None = Field(None, max_length=2000)
    priority: Priority | None = Field(None, description="free-standing requests: P0-P3 or any spelling")
    expires_in: float | None = Field(None, gt=0, le=30 * 86400, description="seconds; default from settings")
    owner_type: str | None = Field(None, pattern="(?i)^(user|organization)$")
    owner_id: str | None = Field(None, max_length=64)
    description: str | None = Field(None, max_length=10_000, description="markdown shown to the approver")
    preview: Any = Field(None, description="what is being approved (shown size-limited, secrets masked)")
    input_schema: dict[str, Any] | None = Field(
        None, description="a JSON Schema of the input an approval must carry (given to the requester)"
    )


class ApprovalContext(ResponseModel):
    description: str = Field(description="markdown; render it escaped")
    preview: Any = Field(None, description="the run's state or the task's arguments, size-limited, secrets masked")
    truncated: bool = False


class ToolCallOut(ResponseModel):
    name: str = Field(description="the tool")
    arguments: Any = Field(None, description="the arguments the model called it with")


class ApprovalOut(ResponseModel):
    id: str
    task_id: str | None
    execution_id: str | None = Field(None, description="the run waiting at an approval node")
    node_id: str | None = Field(None, description="that node")
    agent_id: str | None = Field(None, description="the agent whose work this gates")
    tool_call: ToolCallOut | None = Field(
        None, description="a framework agent's tool call that waits for this decision; either decision resumes the task"
    )
    context: ApprovalContext | None = None
    input_schema: dict[str, Any] | None = Field(None, description="JSON Schema of the input an approval must carry")
    decision_input: dict[str, Any] | None = Field(None, description="the input given with the approval")
    priority: str
    reason: str | None
    status: str
    requested_by: str
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    expires_at: datetime
    escalations: int
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def approval_id(self) -> str:
        """The id, under the name some clients use."""
        return self.id

    @computed_field  # type: ignore[prop-decorator]
    @property
    def approved_by(self) -> str | None:
        return self.decided_by if self.status == ApprovalStatus.approved else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def approved_at(self) -> datetime | None:
        return self.decided_at if self.status == ApprovalStatus.approved else None


class ApprovalStatusOut(ResponseModel):
    approval_id: str
    task_id: str | None
    status: str
    approved_by: str | None
    approved_at: datetime | None


class ApprovalDetail(ApprovalOut):
    """`GET /approvals/{id}`: the approval, plus `success` and its status under `approval` as other clients
    read it."""

    success: bool = True

    @computed_field  # type: ignore[prop-decorator]
    @property
    def approval(self) -> ApprovalStatusOut:
        return ApprovalStatusOut(
            approval_id=self.id,
            task_id=self.task_id,
            status=self.status,
            approved_by=self.approved_by,
            approved_at=self.approved_at,
        )


class ApprovalList(ResponseModel):
    success: bool = True
    count: int
    approvals: list[ApprovalOut]
    pagination: PaginationInfo
    links: PaginationLinks


class ApprovalHistory(ResponseModel):
    success: bool = True
    count: int
    history: list[ApprovalOut]
    pagination: PaginationInfo
    links: PaginationLinks


class DecisionIn(RequestModel):
    """An approval's optional body: `input` (required when the approval has an `input_schema`) and a note."""

    input: dict[str, Any] | None = Field(None, description="checked against the approval's input_schema")
    reason: str | None = Field(None, max_length=2000)


class DecisionOut(ResponseModel):
    success: bool = True
    approval_id: str
    status: str
    task_id: str | None
    message: str
