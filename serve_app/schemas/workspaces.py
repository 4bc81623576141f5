"""Requirements, workspaces, archives and settings."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, StrictBool, field_validator

from serve_app.schemas.common import RequestModel, ResponseModel
from serve_app.schemas.tasks import Priority


class RequirementIn(RequestModel):
    requirement: str = Field(min_length=1, max_length=20_000, description="What is wanted, in words.")
    priority: Priority | None = Field(
        None, description="1-10, P0-P3 or critical/high/medium/low; default: your settings' default_priority (5)"
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="kept on the task; `project_id`: the project whose workspace gets the files (default: "
        "your own `Workspace` project); `approve_after`: stages (or true for all) a person approves before "
        "the next one starts",
    )


class RequirementAccepted(ResponseModel):
    task_id: str
    status: str = Field(description="`created`: the pipeline's run is on its way")
    agents_assigned: list[str] = Field(description="who does each stage, in order: an agent's name or builtin-<role>")
    agents: dict[str, str]
    estimated_completion: str
    execution_id: str
    project_id: str


class WorkspaceFile(ResponseModel):
    name: str
    path: str = Field(description="relative to the workspace")
    size: int
    created: str
    runnable: bool
    metadata: dict[str, Any]


class WorkspaceFileList(ResponseModel):
    files: list[WorkspaceFile]


class WorkspaceRunStarted(ResponseModel):
    execution_id: str
    status: str
    process_id: int | None = Field(description="the sandbox's pid once started; see the execution's output")
    output_stream: str = Field(description="WebSocket of the run's output (`execution_output` messages)")
    stream_url: str = Field(description="the same as Server-Sent Events")


class ResetResult(ResponseModel):
    status: str
    archive_path: str
    archive_name: str
    files_archived: int
    workspace_cleared: bool


class ArchiveOut(ResponseModel):
    name: str
    created: str
    files: int
    size: str
    size_bytes: int


class ArchiveList(ResponseModel):
    archives: list[ArchiveOut]


class ArchiveFile(ResponseModel):
    path: str
    size: int
    sha256: str


class ArchiveFiles(ResponseModel):
    name: str
    created: str
    files: list[ArchiveFile]
    requirements: list[dict[str, Any]] = Field(default_factory=list)
    runs: list[dict[str, Any]] = Field(default_factory=list)


# The schemes an `openai_base_url` may have (checked by SettingsIn._url; a blank one is taken as none).
URL_SCHEMES = ("http://", "https://")
BaseUrl = Annotated[
    str,
    Field(
        max_length=500,
        json_schema_extra={"pattern": rf"^\s*({'|'.join(re.escape(scheme) for scheme in URL_SCHEMES)}|$)"},
    ),
]


class SettingsIn(RequestModel):
    openai_api_key: str | None = Field(None, max_length=500, description='stored encrypted; "" removes it')
    anthropic_api_key: str | None = Field(None, max_length=500, description='stored encrypted; "" removes it')
    openai_base_url: BaseUrl | None = Field(
        None, description="any OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1"
    )
    llm_model: str | None = Field(None, max_length=200, description="the model the role agents ask")
    default_priority: int | None = Field(None, ge=1, le=10, description="null: back to the default, 5")
    auto_save: StrictBool | None = Field(None, description="null: back to the default, true")

    @field_validator("openai_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not value.startswith(URL_SCHEMES):
            raise ValueError("an http:// or https:// URL")
        return value


class SettingsOut(ResponseModel):
    openai_api_key: str | None = Field(description="masked: first three and last four characters")
    anthropic_api_key: str | None = Field(description="masked: first three and last four characters")
    openai_base_url: str | None
    llm_model: str | None
    default_priority: int
    auto_save: bool
    updated_at: Any = None
