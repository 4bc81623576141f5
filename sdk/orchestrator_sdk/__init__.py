"""Python client of the Orchestrator API: `Client` (synchronous), `AsyncClient` (asyncio), typed models,
typed errors, paging iterators, resumable streams and notebook conveniences. See docs/sdk.md."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import Any

import httpx

from orchestrator_sdk import models
from orchestrator_sdk._client import AsyncClient, AsyncPager, Client, Page, api_url
from orchestrator_sdk._sse import StreamEvent
from orchestrator_sdk.errors import (
    APIConnectionError,
    AuthenticationError,
    AuthorizationError,
    Conflict,
    DeploymentFailed,
    FrameworkUnavailable,
    InsufficientResources,
    InternalError,
    InvalidTransition,
    MethodNotAllowed,
    NotAvailable,
    NotFound,
    OrchestratorError,
    PayloadTooLarge,
    RateLimited,
    RunFailed,
    ServiceUnavailable,
    ValidationError,
    error_from_response,
)
from orchestrator_sdk.runs import AsyncRun, Run
from orchestrator_sdk.workflow import Workflow

REQUIREMENTS_UNAVAILABLE = "requirements are not available on this platform"


class OrchestratorClient(AsyncClient):
    """The client of the API guide's Python example: an `AsyncClient` (`await client.tasks.create({...})`,
    `async for update in client.tasks.watch(task_id)`).

    It also keeps the synchronous calls of the requirements pipeline's example (`submit_requirement`,
    `get_task_status`, `list_workspace_files`), answering the platform's JSON as mappings. Against a
    platform without those routes they raise `NotAvailable` saying so."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, **options: Any) -> None:
        super().__init__(base_url, api_key=api_key, **options)
        self._last_project: str | None = None

    def _sync_call(self, method: str, path: str, feature: str, **kwargs: Any) -> Any:
        headers = {**self._headers, **self._credentials.headers()}
        with httpx.Client(timeout=self.timeout, headers=headers, transport=self._sync_transport()) as http:
            response = http.request(method, self._url(path), **kwargs)
        if response.status_code in (404, 405) and _route_missing(response):
            raise NotAvailable(
                feature,
                status=response.status_code,
                response=response,
                correlation_id=response.headers.get("X-Correlation-ID"),
            )
        if not response.is_success:
            raise error_from_response(response)
        return response.json()

    def _sync_transport(self) -> Any:
        return self._transport if isinstance(self._transport, httpx.BaseTransport) else None

    def submit_requirement(self, requirement: str, priority: int = 5, metadata: dict[str, Any] | None = None) -> Any:
        """POST /requirements: a requirement worked by a pipeline of role agents."""
        body = {"requirement": requirement, "priority": priority, "metadata": metadata or {}}
        accepted = self._sync_call("POST", "/requirements", REQUIREMENTS_UNAVAILABLE, json=body)
        self._last_project = accepted.get("project_id")
        return accepted

    def get_task_status(self, task_id: str) -> Any:
        """The task of a requirement (GET /tasks/{id}); a plain task works too."""
        return self._sync_call("GET", f"/tasks/{task_id}", REQUIREMENTS_UNAVAILABLE)

    def list_workspace_files(self, project_id: str | None = None) -> Any:
        """Files a requirement's run produced (GET /projects/{id}/workspace/files): of `project_id`, else of
        the project of the last `submit_requirement`, else of your default `Workspace` project."""
        project_id = project_id or self._last_project or self._default_project()
        if project_id is None:
            return {"files": []}
        path = f"/projects/{project_id}/workspace/files"
        return self._sync_call("GET", path, "workspace files are not available on this platform")

    def _default_project(self) -> str | None:
        found = self._sync_call("GET", "/projects", REQUIREMENTS_UNAVAILABLE, params={"search": "Workspace"})
        return next((p["id"] for p in found.get("projects", []) if p.get("name") == "Workspace"), None)


def _route_missing(response: httpx.Response) -> bool:
    """A 404 for the route itself (no such path on this platform), not for a resource it names."""
    if response.status_code == 405:
        return True
    try:
        message = (response.json().get("error") or {}).get("message", "")
    except (ValueError, AttributeError):
        return True
    message = message.strip().lower()
    return message.startswith("no route for") or message in ("not found", "")


__all__ = [
    "APIConnectionError",
    "AsyncClient",
    "AsyncPager",
    "AsyncRun",
    "AuthenticationError",
    "AuthorizationError",
    "Client",
    "Conflict",
    "DeploymentFailed",
    "FrameworkUnavailable",
    "InsufficientResources",
    "InternalError",
    "InvalidTransition",
    "MethodNotAllowed",
    "NotAvailable",
    "NotFound",
    "OrchestratorClient",
    "OrchestratorError",
    "Page",
    "PayloadTooLarge",
    "RateLimited",
    "Run",
    "RunFailed",
    "ServiceUnavailable",
    "StreamEvent",
    "ValidationError",
    "Workflow",
    "__version__",
    "api_url",
    "models",
]
