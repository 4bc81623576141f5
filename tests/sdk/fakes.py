"""A fake platform for the SDK's unit tests: routes `(method, path)` to handlers over `httpx.MockTransport`
and records every request."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx

API = "http://fake/api/v1"
Handler = Callable[[httpx.Request], httpx.Response]


def envelope(
    status: int,
    code: str,
    message: str,
    details: list | None = None,
    cid: str = "cid-1",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": details or [],
            "timestamp": "2026-01-01T00:00:00Z",
            "correlation_id": cid,
        }
    }
    return httpx.Response(status, json=body, headers={"X-Correlation-ID": cid, **(headers or {})})


class FakePlatform:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[httpx.Request] = []

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes[(method, "/api/v1" + path)] = handler
            return handler

        return register

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return envelope(404, "NOT_FOUND", f"No route for {request.method} {request.url.path}")
        return handler(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == "/api/v1" + path]


def listing(key: str, items: list[dict[str, Any]], page: int, limit: int, total: int) -> httpx.Response:
    pages = max(1, -(-total // limit))
    return httpx.Response(
        200,
        json={
            key: items,
            "pagination": {
                "page": page,
                "limit": limit,
                "total": total,
                "pages": pages,
                "has_next": page < pages,
                "has_prev": page > 1,
            },
            "links": {"first": None, "last": None, "next": None, "prev": None},
        },
    )


def sse(event: str, data: Any, event_id: str) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


class DroppingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Sends `chunks`, then fails like a dropped connection when `drop` is set, else ends."""

    def __init__(self, chunks: list[bytes], drop: bool, error: type[Exception] = httpx.RemoteProtocolError) -> None:
        self.chunks, self.drop, self.error = chunks, drop, error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.drop:
            raise self.error("peer closed connection without sending complete message body")

    async def __aiter__(self):  # type: ignore[override]
        for chunk in self.chunks:
            yield chunk
        if self.drop:
            raise self.error("peer closed connection without sending complete message body")


def task(task_id: str = "t1", **fields: Any) -> dict[str, Any]:
    base = {
        "id": task_id,
        "title": "T",
        "description": None,
        "type": "feature",
        "priority": "P2",
        "status": "pending",
        "agent_id": None,
        "project_id": None,
        "source": None,
        "payload": {},
        "metadata": {},
        "tags": [],
        "requirements": [],
        "acceptance_criteria": [],
        "result": None,
        "error": None,
        "estimated_hours": None,
        "actual_hours": None,
        "progress": 0.0,
        "sla_target": None,
        "due_date": None,
        "owner_type": "user",
        "owner_id": "u1",
        "created_by": "u1",
        "assigned_at": None,
        "started_at": None,
        "completed_at": None,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "task_id": task_id,
        "assigned_agent": None,
    }
    base.update(fields)
    return base


def user(**fields: Any) -> dict[str, Any]:
    return {
        "id": "u1",
        "email": "a@example.com",
        "first_name": None,
        "last_name": None,
        "role": "agent",
        "subscription_tier": "free",
        "is_active": True,
        "email_verified": False,
        "preferences": {},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "last_login_at": None,
        **fields,
    }


def step(seq: int, node_id: str, status: str = "completed", error: str | None = None) -> dict[str, Any]:
    return {
        "seq": seq,
        "node_id": node_id,
        "node_type": "python",
        "attempt": 1,
        "status": status,
        "input": {},
        "output": {},
        "error": error,
        "idempotency_key": f"k{seq}",
        "started_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:01Z",
        "duration_ms": 1.0,
    }


def execution(run_id: str = "r1", status: str = "completed", steps: list | None = None, **fields: Any) -> dict:
    return {
        "id": run_id,
        "workflow_id": "w1",
        "workflow_version": "1.0.0",
        "agent_id": "a1",
        "task_id": None,
        "status": status,
        "input": {},
        "output": {"value": 42} if status == "completed" else None,
        "error": fields.pop("error", None),
        "progress": 1.0,
        "current_step": None,
        "tokens_used": 0,
        "cost": 0.0,
        "trigger": "manual",
        "environment": "development",
        "resource_usage": {},
        "waiting_on": None,
        "correlation_id": "cid-run",
        "resumes": 0,
        "actor_name": None,
        "owner_type": "user",
        "owner_id": "u1",
        "created_by": "u1",
        "created_at": "2026-01-01T00:00:00Z",
        "started_at": None,
        "completed_at": None,
        "duration": None,
        "steps": steps or [],
        "logs": [],
        "execution_id": run_id,
        "execution_data": {},
        **fields,
    }
