"""The namespaces of both clients: `client.agents`, `.workflows`, `.executions`, `.tasks`, `.approvals`,
`.projects`, `.events`, `.webhooks`, `.users`, `.auth`.

Each method is written once: it returns the client's answer, which a `Client` gives directly and an
`AsyncClient` as an awaitable. Lists come two ways: `list(...)` iterates over every item across pages
(`for` with `Client`, `async for` or `await` with `AsyncClient`), `page(...)` returns one `Page`.
Request bodies are a mapping, keyword arguments, or both; the API accepts snake_case and camelCase names.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from orchestrator_sdk import models as m
from orchestrator_sdk.errors import NotFound
from orchestrator_sdk.runs import AsyncRun, Run

# A request carrying this header may be sent again whatever its method: the server answers a repeat with what
# the first made (`POST /tasks`).
IDEMPOTENCY_HEADER = "Idempotency-Key"

if TYPE_CHECKING:
    from orchestrator_sdk._client import _Base

TASK_DONE = "completed"
TASK_FAILED = frozenset({"failed", "cancelled"})


def _body(body: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """The body: a mapping or model as given (an explicit None clears a field), plus the keyword fields that
    are not None."""
    data = body.to_dict() if hasattr(body, "to_dict") else dict(body or {})
    data.update({k: v for k, v in fields.items() if v is not None})
    return data


class _Resource:
    def __init__(self, client: _Base) -> None:
        self._c: Any = client


class _Crud(_Resource):
    path = ""
    key = ""
    out: Any = None
    list_out: Any = None

    def create(self, body: Any = None, **fields: Any) -> Any:
        return self._c._call("POST", self.path, self.out.model_validate, json=_body(body, fields))

    def get(self, ident: str) -> Any:
        return self._c._call("GET", f"{self.path}/{ident}", self.out.model_validate)

    def update(self, ident: str, body: Any = None, **fields: Any) -> Any:
        """Change the fields given (PATCH where the route has it, else PUT: both change only those)."""
        return self._c._call(
            self.update_method, f"{self.path}/{ident}", self.out.model_validate, json=_body(body, fields)
        )

    update_method = "PATCH"

    def delete(self, ident: str) -> Any:
        return self._c._call("DELETE", f"{self.path}/{ident}", m.MessageResponse.model_validate)

    def list(self, **filters: Any) -> Any:
        """Every item across pages (filters as the route takes them: `status=`, `search=` …)."""
        return self._c._paginate(self.path, self.key, filters, (self.list_out or self.out).model_validate)

    def page(self, page: int = 1, limit: int = 20, **filters: Any) -> Any:
        """One page: a list with `.pagination`, `.links`, `.has_next`, `.total`."""
        cast = (self.list_out or self.out).model_validate
        return self._c._get_page(self.path, self.key, {**filters, "page": page}, cast, limit=limit)


class Agents(_Crud):
    path, key, out = "/agents", "agents", m.AgentOut

    def deploy(self, agent_id: str) -> Any:
        return self._c._call("POST", f"/agents/{agent_id}/deploy")

    def undeploy(self, agent_id: str) -> Any:
        return self._c._call("POST", f"/agents/{agent_id}/undeploy")

    def heartbeat(self, agent_id: str) -> Any:
        """An external worker's sign of life (send it more often than ORCHESTRATOR_AGENT_HEARTBEAT_TIMEOUT_S)."""
        return self._c._call("POST", f"/agents/{agent_id}/heartbeat")

    def enable(self, agent_id: str) -> Any:
        return self._c._call("POST", f"/agents/{agent_id}/enable", m.AgentOut.model_validate)

    def disable(self, agent_id: str) -> Any:
        return self._c._call("POST", f"/agents/{agent_id}/disable", m.AgentOut.model_validate)

    def tasks(self, agent_id: str, **filters: Any) -> Any:
        return self._c._paginate(f"/agents/{agent_id}/tasks", "tasks", filters, m.TaskOut.model_validate)

    def metrics(self, agent_id: str) -> Any:
        return self._c._call("GET", f"/agents/{agent_id}/metrics", m.AgentMetrics.model_validate)

    def container(self, agent_id: str) -> Any:
        return self._c._call("GET", f"/agents/{agent_id}/container", m.ContainerOut.model_validate)

    def container_logs(self, agent_id: str, **params: Any) -> Any:
        return self._c._call("GET", f"/agents/{agent_id}/container/logs", m.LogsResponse.model_validate, params=params)

    def restart_container(self, agent_id: str) -> Any:
        return self._c._call("POST", f"/agents/{agent_id}/container/restart")


class Workflows(_Resource):
    def create(self, agent_id: str, body: Any = None, **fields: Any) -> Any:
        """A workflow of the agent: `name`, `workflow_data={"nodes": [...], "edges": [...], "settings": {...}}`."""
        return self._c._call(
            "POST", f"/agents/{agent_id}/workflows", m.WorkflowOut.model_validate, json=_body(body, fields)
        )

    def list(self, agent_id: str) -> Any:
        return self._c._paginate(f"/agents/{agent_id}/workflows", "workflows", {}, m.WorkflowOut.model_validate)

    def get(self, workflow_id: str) -> Any:
        return self._c._call("GET", f"/workflows/{workflow_id}", m.WorkflowOut.model_validate)

    def update(self, workflow_id: str, body: Any = None, **fields: Any) -> Any:
        return self._c._call(
            "PATCH", f"/workflows/{workflow_id}", m.WorkflowOut.model_validate, json=_body(body, fields)
        )

    def delete(self, workflow_id: str) -> Any:
        return self._c._call("DELETE", f"/workflows/{workflow_id}", m.MessageResponse.model_validate)

    def versions(self, workflow_id: str) -> Any:
        return self._c._call("GET", f"/workflows/{workflow_id}/versions", m.WorkflowVersionList.model_validate)

    def execute(
        self,
        workflow_id: str,
        input_data: dict[str, Any] | None = None,
        *,
        execution_options: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Any:
        """Start a run; returns a `Run` (`AsyncRun`) to `wait()`, `stream()`, `logs()` or `cancel()`."""
        body = _body({"input_data": input_data or {}}, {"execution_options": execution_options, **fields})
        return _run(self._c, self._c._call("POST", f"/workflows/{workflow_id}/execute", json=body))

    def submit(self, workflow: Any, input: dict[str, Any] | None = None, *, agent_id: str | None = None) -> Any:
        """Run a Python-defined `Workflow` (orchestrator_sdk.workflow): its functions are shipped (once: the
        same code is found by its hash), the workflow is stored under `agent_id` (default: your agent named
        "notebook", made on first use) and started. Returns a `Run`."""
        if self._c.is_async:
            return _submit_async(self, workflow, agent_id, input or {})
        return _submit_sync(self, workflow, agent_id, input or {})


# The agent that holds Python-defined workflows submitted without one (every workflow belongs to an agent).
NOTEBOOK_AGENT = "notebook"


def _submit_sync(workflows: Workflows, workflow: Any, agent_id: str | None, input: dict[str, Any]) -> Any:
    client = workflows._c
    data, sha256, names = workflow.bundle()
    try:
        client._call("GET", f"/code-bundles/{sha256}")
    except NotFound:
        client._request(
            "PUT",
            f"/code-bundles/{sha256}",
            content=data,
            params={"python": workflow.python(), "functions": ",".join(names)},
            headers={"Content-Type": "application/octet-stream"},
        )
    if agent_id is None:
        found = next((a for a in client.agents.list(search=NOTEBOOK_AGENT) if a.name == NOTEBOOK_AGENT), None)
        agent_id = (found or client.agents.create(name=NOTEBOOK_AGENT, description="Python-defined workflows")).id
    created = workflows.create(
        agent_id, name=workflow.name, description=workflow.description, workflow_data=workflow.graph(sha256)
    )
    return workflows.execute(created.id, input)


async def _submit_async(workflows: Workflows, workflow: Any, agent_id: str | None, input: dict[str, Any]) -> Any:
    client = workflows._c
    data, sha256, names = workflow.bundle()
    try:
        await client._call("GET", f"/code-bundles/{sha256}")
    except NotFound:
        await client._request(
            "PUT",
            f"/code-bundles/{sha256}",
            content=data,
            params={"python": workflow.python(), "functions": ",".join(names)},
            headers={"Content-Type": "application/octet-stream"},
        )
    if agent_id is None:
        found = None
        async for agent in client.agents.list(search=NOTEBOOK_AGENT):
            if agent.name == NOTEBOOK_AGENT:
                found = agent
                break
        agent_id = (found or await client.agents.create(name=NOTEBOOK_AGENT, description="Python-defined workflows")).id
    created = await workflows.create(
        agent_id, name=workflow.name, description=workflow.description, workflow_data=workflow.graph(sha256)
    )
    return await workflows.execute(created.id, input)


def _run(client: Any, started: Any) -> Any:
    if client.is_async:

        async def wrap() -> AsyncRun:
            data = await started
            return AsyncRun(client, data["execution_id"], started=data)

        return wrap()
    return Run(client, started["execution_id"], started=started)


class Executions(_Resource):
    def start(self, agent_id: str, input: dict[str, Any] | None = None, **fields: Any) -> Any:
        """Run the agent's active workflow (`configuration`, `environment`, `trigger` optional); a `Run`."""
        body = _body({"agent_id": agent_id, "input": input or {}}, fields)
        return _run(self._c, self._c._call("POST", "/executions", json=body))

    def run(self, execution_id: str) -> Run | AsyncRun:
        """A handle on an existing run (no request is made)."""
        return (AsyncRun if self._c.is_async else Run)(self._c, execution_id)

    def get(self, execution_id: str) -> Any:
        return self._c._call("GET", f"/executions/{execution_id}", m.ExecutionDetail.model_validate)

    def list(self, **filters: Any) -> Any:
        return self._c._paginate("/executions", "executions", filters, m.ExecutionOut.model_validate)

    def page(self, page: int = 1, limit: int = 20, **filters: Any) -> Any:
        return self._c._get_page(
            "/executions", "executions", {**filters, "page": page}, m.ExecutionOut.model_validate, limit=limit
        )

    def cancel(self, execution_id: str) -> Any:
        return self._c._call("POST", f"/executions/{execution_id}/cancel", m.ExecutionOut.model_validate)

    def logs(self, execution_id: str, *, level: str | None = None, limit: int = 100, offset: int = 0) -> Any:
        params = {"level": level, "limit": limit, "offset": offset}
        return self._c._call(
            "GET",
            f"/executions/{execution_id}/logs",
            m.LogPage.model_validate,
            params={k: v for k, v in params.items() if v is not None},
        )

    def stream(
        self,
        execution_id: str,
        last_event_id: str | None = None,
        max_reconnects: int = 10,
        timeout: float | None = None,
    ) -> Any:
        """The run's Server-Sent Events (`step`, `log`, `status`, then `end`), resumed from the last event id
        after a dropped connection, each event once; the run is never started again. `timeout` (seconds):
        TimeoutError when the run has not ended by then."""
        return self._c._sse(f"/executions/{execution_id}/stream", last_event_id, max_reconnects, timeout)


class Tasks(_Crud):
    path, key, out, list_out = "/tasks", "tasks", m.TaskDetail, m.TaskOut

    def create(self, body: Any = None, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        """Create a task. It carries an `Idempotency-Key` (`idempotency_key`, else a new random one), so that
        the client's retries after a lost answer or a 503 never create a second task."""
        headers = {IDEMPOTENCY_HEADER: idempotency_key or uuid.uuid4().hex}
        return self._c._call("POST", "/tasks", m.TaskOut.model_validate, json=_body(body, fields), headers=headers)

    def get(self, ident: str, include: str | list[str] | None = None) -> Any:
        """The task; `include="comments,files,history,metrics"` adds those."""
        params = {"include": ",".join(include) if isinstance(include, list) else include} if include else None
        return self._c._call("GET", f"/tasks/{ident}", m.TaskDetail.model_validate, params=params)

    def update(self, ident: str, body: Any = None, **fields: Any) -> Any:
        return self._c._call("PATCH", f"/tasks/{ident}", m.TaskOut.model_validate, json=_body(body, fields))

    def set_status(
        self,
        task_id: str,
        status: str,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        progress: float | None = None,
    ) -> Any:
        """Report progress (`progress` 0–1) or the outcome: `in_progress`, `completed`, `failed`."""
        body = _body({"status": status}, {"error": error, "result": result, "progress": progress})
        return self._c._call("PATCH", f"/tasks/{task_id}/status", m.TaskStatusOut.model_validate, json=body)

    def assign(self, task_id: str, agent_id: str) -> Any:
        return self._c._call("POST", f"/tasks/{task_id}/assign", m.TaskOut.model_validate, json={"agent_id": agent_id})

    def comment(self, task_id: str, content: str, mentions: list[str] | None = None) -> Any:
        return self._c._call(
            "POST",
            f"/tasks/{task_id}/comments",
            m.CommentOut.model_validate,
            json=_body({"content": content}, {"mentions": mentions}),
        )

    def comments(self, task_id: str) -> Any:
        return self._c._paginate(f"/tasks/{task_id}/comments", "comments", {}, m.CommentOut.model_validate)

    def upload_file(
        self, task_id: str, filename: str, content: bytes, content_type: str = "application/octet-stream"
    ) -> Any:
        return self._c._call(
            "POST",
            f"/tasks/{task_id}/files",
            m.FileOut.model_validate,
            files={"file": (filename, content, content_type)},
        )

    def files(self, task_id: str) -> Any:
        return self._c._paginate(f"/tasks/{task_id}/files", "files", {}, m.FileOut.model_validate)

    def watch(self, task_id: str, interval: float = 0.5, timeout: float | None = None) -> Any:
        """Follow a task until it ends. Yields mappings with `type`: `progress` (status or progress changed;
        `progress` 0–1, `status`, `task`), then `completed` (`result`, `task`) or `error` (`error`, `status`,
        `task`). The platform streams task changes only over its WebSocket, so this reads the task every
        `interval` seconds (a missed intermediate state is possible; the final one never is)."""
        if self._c.is_async:
            return self._watch_async(task_id, interval, timeout)
        return self._watch(task_id, interval, timeout)

    def _watch(self, task_id: str, interval: float, timeout: float | None) -> Iterator[dict[str, Any]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        state = _WatchState()
        while True:
            update = state.next(self._c._call("GET", f"/tasks/{task_id}", m.TaskOut.model_validate))
            if update is not None:
                yield update
                if update["type"] != "progress":
                    return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {state.last[0] if state.last else 'unknown'}")
            time.sleep(interval)

    async def _watch_async(self, task_id: str, interval: float, timeout: float | None) -> AsyncIterator[dict[str, Any]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        state = _WatchState()
        while True:
            update = state.next(await self._c._call("GET", f"/tasks/{task_id}", m.TaskOut.model_validate))
            if update is not None:
                yield update
                if update["type"] != "progress":
                    return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {state.last[0] if state.last else 'unknown'}")
            await asyncio.sleep(interval)


class _WatchState:
    """Task → watch update: `progress` on a change, then `completed` or `error` once."""

    def __init__(self) -> None:
        self.last: tuple[str, float] | None = None

    def next(self, task: Any) -> dict[str, Any] | None:
        key = (task.status, task.progress)
        if task.status == TASK_DONE:
            return {"type": "completed", "status": task.status, "progress": 1.0, "result": task.result, "task": task}
        if task.status in TASK_FAILED:
            return {
                "type": "error",
                "status": task.status,
                "progress": task.progress,
                "error": task.error or f"task {task.status}",
                "task": task,
            }
        if key == self.last:
            return None
        self.last = key
        return {"type": "progress", "status": task.status, "progress": task.progress, "task": task}


class Approvals(_Resource):
    def create(self, body: Any = None, **fields: Any) -> Any:
        return self._c._call("POST", "/approvals", m.ApprovalOut.model_validate, json=_body(body, fields))

    def get(self, approval_id: str) -> Any:
        return self._c._call("GET", f"/approvals/{approval_id}", m.ApprovalOut.model_validate)

    def pending(self, **filters: Any) -> Any:
        """Every pending approval you may decide or watch (most urgent first; `sort_by="expires_at"` for the
        soonest to expire); filters `execution_id=`, `task_id=`, `agent_id=`, `priority=`, `expires_before=`."""
        return self._c._paginate("/approvals/pending", "approvals", filters, m.ApprovalOut.model_validate)

    def list(self) -> Any:
        return self.pending()

    def history(self) -> Any:
        """Decided and expired approvals, newest first."""
        return self._c._paginate("/approvals/history", "history", {}, m.ApprovalOut.model_validate)

    def approve(self, approval_id: str, input: dict[str, Any] | None = None, reason: str | None = None) -> Any:
        """Approve; `input` is required when the approval has an `input_schema` (the resumed run gets it)."""
        body = {key: value for key, value in (("input", input), ("reason", reason)) if value is not None}
        return self._c._call(
            "POST", f"/approvals/{approval_id}/approve", m.DecisionOut.model_validate, json=body or None
        )

    def reject(self, approval_id: str, reason: str | None = None) -> Any:
        return self._c._call(
            "POST",
            f"/approvals/{approval_id}/reject",
            m.DecisionOut.model_validate,
            params={"reason": reason} if reason else None,
        )


class Projects(_Crud):
    path, key, out = "/projects", "projects", m.ProjectOut

    def tasks(self, project_id: str, **filters: Any) -> Any:
        return self._c._paginate(f"/projects/{project_id}/tasks", "tasks", filters, m.TaskOut.model_validate)

    def add_member(
        self, project_id: str, user_id: str | None = None, *, email: str | None = None, role: str = "member"
    ) -> Any:
        return self._c._call(
            "POST", f"/projects/{project_id}/members", json=_body({"role": role}, {"user_id": user_id, "email": email})
        )

    def remove_member(self, project_id: str, user_id: str) -> Any:
        return self._c._call("DELETE", f"/projects/{project_id}/members/{user_id}", m.MessageResponse.model_validate)


class Events(_Resource):
    def publish(self, event_type: str, payload: dict[str, Any] | None = None, **fields: Any) -> Any:
        """Publish a custom event (`source_agent`, `task_id`, `trace_id`, `priority` optional)."""
        return self._c._call(
            "POST",
            "/events/publish",
            m.PublishedEvent.model_validate,
            json=_body({"event_type": event_type, "payload": payload or {}}, fields),
        )

    def list(self, **filters: Any) -> Any:
        """Events you may see, newest first (`type=`, `source=`, `task_id=`, `trace_id=`, `since=`)."""
        return self._c._paginate("/events", "events", filters, m.EventOut.model_validate)

    def subscribe(
        self, channel: str = "events", filters: dict[str, Any] | None = None, *, reconnect: bool = True
    ) -> Any:
        """Live events of a channel (`tasks`, `executions`, `agents`, `approvals`, `projects`,
        `notifications`, `events` for all) over the WebSocket, as an iterator that reconnects and catches up
        on what it missed (sync client; `pip install 'orchestrator-sdk[realtime]'`)."""
        if self._c.is_async:
            raise NotImplementedError("subscribe() is for the synchronous Client")
        from orchestrator_sdk.realtime import EventStream

        return EventStream(self._c, channel, filters, reconnect=reconnect, max_backoff=5.0)

    def page(self, page: int = 1, limit: int = 20, **filters: Any) -> Any:
        return self._c._get_page("/events", "events", {**filters, "page": page}, m.EventOut.model_validate, limit=limit)


class Webhooks(_Crud):
    path, key, out = "/webhooks", "webhooks", m.WebhookOut

    def deliveries(self, webhook_id: str) -> Any:
        return self._c._paginate(f"/webhooks/{webhook_id}/deliveries", "deliveries", {}, m.DeliveryOut.model_validate)

    def test(self, webhook_id: str) -> Any:
        return self._c._call("POST", f"/webhooks/{webhook_id}/test", m.DeliveryOut.model_validate)

    def retry_delivery(self, webhook_id: str, delivery_id: str) -> Any:
        return self._c._call(
            "POST", f"/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", m.DeliveryOut.model_validate
        )


class Users(_Resource):
    def me(self) -> Any:
        return self._c._call("GET", "/users/me", m.UserOut.model_validate)

    def update_me(self, body: Any = None, **fields: Any) -> Any:
        return self._c._call("PUT", "/users/me", m.UserOut.model_validate, json=_body(body, fields))


class Auth(_Resource):
    def create_api_key(self, name: str, permissions: list[str] | None = None, **fields: Any) -> Any:
        """A new API key (`.key` is shown in this answer only)."""
        return self._c._call(
            "POST",
            "/auth/api-keys",
            m.ApiKeyCreated.model_validate,
            json=_body({"name": name}, {"permissions": permissions, **fields}),
        )

    def api_keys(self) -> Any:
        return self._c._paginate("/auth/api-keys", "api_keys", {}, m.ApiKeyOut.model_validate)

    def revoke_api_key(self, key_id: str) -> Any:
        return self._c._call("DELETE", f"/auth/api-keys/{key_id}", m.MessageResponse.model_validate)

    def logout(self) -> Any:
        creds = self._c._credentials
        return self._c._call(
            "POST", "/auth/logout", json={"refresh_token": creds.refresh_token} if creds.refresh_token else None
        )


class Requirements(_Resource):
    def submit(self, requirement: str, priority: int | str = 5, metadata: dict[str, Any] | None = None) -> Any:
        """Start a requirement's pipeline (analyst → implementer → validator → integrator). Follow it with
        `tasks.watch(result.task_id)` or `executions.get(result.execution_id)`; its files land in the
        workspace of `result.project_id`."""
        body = {"requirement": requirement, "priority": priority, "metadata": metadata or {}}
        return self._c._call("POST", "/requirements", m.RequirementAccepted.model_validate, json=body)


class Workspaces(_Resource):
    """A project's workspace: the files its requirement pipelines wrote, runs in the sandbox, archives."""

    def files(self, project_id: str) -> Any:
        return self._c._call(
            "GET",
            f"/projects/{project_id}/workspace/files",
            lambda body: [m.WorkspaceFile.model_validate(f) for f in body["files"]],
        )

    def read(self, project_id: str, path: str) -> Any:
        """The file's content as text."""
        url = f"/projects/{project_id}/workspace/files/{quote(path)}"
        if self._c.is_async:
            return self._read_async(url)
        return self._c._request("GET", url).text

    async def _read_async(self, url: str) -> str:
        return (await self._c._request("GET", url)).text

    def run(self, project_id: str, path: str) -> Any:
        """Run the file in the sandbox: a `Run` (`.wait()`, `.stream()`); the sandbox's exit code, duration
        and usage are its output's `run`, what the file printed is its `execution_output` stream."""
        return _run(self._c, self._c._call("POST", f"/projects/{project_id}/workspace/run/{quote(path)}"))

    def reset(self, project_id: str) -> Any:
        """Archive the workspace, then clear it."""
        return self._c._call("POST", f"/projects/{project_id}/reset", m.ResetResult.model_validate)

    def archives(self, project_id: str) -> Any:
        return self._c._call(
            "GET",
            f"/projects/{project_id}/archives",
            lambda body: [m.ArchiveOut.model_validate(a) for a in body["archives"]],
        )

    def archive(self, project_id: str, name: str) -> Any:
        """An archive's manifest: files with sizes and hashes, the requirements and runs it recorded."""
        return self._c._call(
            "GET", f"/projects/{project_id}/archives/{quote(name)}/files", m.ArchiveFiles.model_validate
        )

    def restore(self, project_id: str, name: str, path: str) -> Any:
        return self._c._call(
            "POST",
            f"/projects/{project_id}/archives/{quote(name)}/restore/{quote(path)}",
            m.WorkspaceFile.model_validate,
        )


class Settings(_Resource):
    """Your settings (or an organization's, with `organization_id`): provider keys are shown masked."""

    def get(self, organization_id: str | None = None) -> Any:
        params = {"organization_id": organization_id} if organization_id else None
        return self._c._call("GET", "/settings", m.SettingsOut.model_validate, params=params)

    def save(self, body: Any = None, organization_id: str | None = None, **fields: Any) -> Any:
        params = {"organization_id": organization_id} if organization_id else None
        return self._c._call("POST", "/settings", m.SettingsOut.model_validate, json=_body(body, fields), params=params)
