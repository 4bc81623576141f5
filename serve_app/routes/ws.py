"""WebSocket `/api/v1/ws` (alias `/ws`): live events (docs/api.md "Real time: WebSocket").

Protocol (JSON text messages):
- authenticate with `Authorization: Bearer …` / `X-API-Key` on the upgrade request, or with the first
  message `{"type": "auth", "token": "…"}` within `ORCHESTRATOR_WS_AUTH_TIMEOUT_S`
  → `{"type": "authenticated", "data": {"user_id", "role"}}`; failure closes with 4401.
- `{"type": "subscribe", "channel": "tasks", "filters": {"project_id": "…"}}` → `{"type": "subscribed", …}`;
  `{"type": "unsubscribe", "channel": "tasks"}` → `{"type": "unsubscribed", …}`. Channels and filters:
  `services.subscriptions`. A bad message gets `{"type": "error", "error": {code, message, details, …}}`
  (the error envelope, docs/api.md "Errors") and the connection stays open.
- events: `{"type": <event name>, "id", "data", "timestamp", "correlation_id"}`, in the order they were
  relayed (one resource's events in the order of its changes). Subscribing again to a channel replaces its
  filters.
- `{"type": "ping"}` → `{"type": "pong"}`; an idle connection gets `{"type": "ping"}` every
  `ORCHESTRATOR_WS_PING_INTERVAL_S`. A consumer too slow for its buffer is closed with 4008; a
  connection whose token expires, or whose credential is revoked or its account disabled (checked again
  every 30 s), with 4401.

This route is not an HTTP route, so `assert_routes_protected` does not see it: it authenticates in the
protocol above and nothing is sent before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from core.clock import isoformat_z, utcnow
from core.errors import AuthenticationFailed, DomainError, FieldIssue, PermissionDenied, ValidationFailed
from serve_app.context import AppContext
from serve_app.deps import principal_for
from serve_app.errors import error_payload
from serve_app.realtime import CLOSE_SLOW_CONSUMER, Connection, EventFeed
from serve_app.request_context import correlation_id_of
from services import executions, subscriptions
from services.organizations import member_organization_ids
from services.principal import Principal
from services.subscriptions import Viewer

log = logging.getLogger("orchestrator.realtime")

router = APIRouter()
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
MAX_MESSAGE_BYTES = 64 * 1024
# Organizations a connection's caller belongs to are read again this often (a removed member stops
# receiving the organization's events within it).
VIEWER_REFRESH_S = 30.0


@router.websocket("/ws")
async def websocket_events(websocket: WebSocket) -> None:
    await _serve(websocket, execution_id=None)


@router.websocket("/ws/execution/{execution_id}")
async def websocket_execution(websocket: WebSocket, execution_id: str) -> None:
    """A run's own stream (the path requirement clients use): subscribed at once to the run's events (404
    closes with 4404); its output arrives as `{"type": "execution_output", "execution_id", "output",
    "timestamp"}`."""
    await _serve(websocket, execution_id=execution_id)


async def _serve(websocket: WebSocket, *, execution_id: str | None) -> None:
    context: AppContext = websocket.app.state.context
    feed: EventFeed = websocket.app.state.event_feed
    settings = context.settings.realtime
    await websocket.accept()
    correlation_id = correlation_id_of(websocket.scope)
    try:
        principal, credential = await _authenticate(websocket, context, settings.ws_auth_timeout_s)
    except (AuthenticationFailed, WebSocketDisconnect, TimeoutError, ValueError, KeyError) as exc:
        reason = exc.message if isinstance(exc, AuthenticationFailed) else "authentication required"
        with contextlib.suppress(Exception):  # failures count per client IP, as for HTTP (guessing tokens)
            await context.rate_limits.check_client(_AsRequest(websocket.scope), "general")
        with contextlib.suppress(Exception):
            await websocket.send_text(
                json.dumps({"type": "error", **error_payload("AUTHENTICATION_ERROR", reason, correlation_id)})
            )
            await websocket.close(CLOSE_UNAUTHENTICATED, reason[:120])
        return
    connection = Connection(await _viewer(context, principal), settings.ws_buffer_messages)
    await _send(
        websocket, {"type": "authenticated", "data": {"user_id": principal.user_id, "role": principal.role.value}}
    )
    if execution_id is not None:
        try:
            await run_in_threadpool(_visible_run, context, principal, execution_id)
        except DomainError as exc:
            await _send(websocket, {"type": "error", **error_payload(exc.code, exc.message, correlation_id)})
            await _close(websocket, CLOSE_NOT_FOUND, "execution not found")
            return
        subscription = subscriptions.parse("executions", {"ids": [execution_id]})
        connection.subscriptions[subscription.channel] = subscription
        await _send(websocket, {"type": "subscribed", "data": subscription.describe()})
    await feed.attach(connection)
    shape = _seed_message if execution_id is not None else _client_message
    sender = asyncio.create_task(_send_events(websocket, connection, settings.ws_ping_interval_s, shape))
    refresher = asyncio.create_task(_refresh_viewer(context, credential, connection))
    expiry = asyncio.create_task(_expire(principal))
    receiver = asyncio.create_task(_receive(websocket, connection, principal))
    # Watched apart from the sender, which may be stuck writing to a client that does not read.
    overflow = asyncio.create_task(connection.overflowed.wait())
    try:
        done, _ = await asyncio.wait(
            {sender, receiver, expiry, overflow, refresher}, return_when=asyncio.FIRST_COMPLETED
        )
        if expiry in done:
            await _close(websocket, CLOSE_UNAUTHENTICATED, "token expired")
        elif refresher in done:
            await _close(websocket, CLOSE_UNAUTHENTICATED, "credential no longer valid")
        elif overflow in done:
            sender.cancel()
            log.warning("closing a slow WebSocket consumer of %s (%d queued)", principal.user_id, connection.buffer)
            await _close(
                websocket, CLOSE_SLOW_CONSUMER, f"slow consumer: more than {connection.buffer} messages waiting"
            )
    finally:
        feed.detach(connection)
        # Not awaited: this handler may itself be being cancelled (the server closing the connection).
        for task in (sender, receiver, refresher, expiry, overflow):
            task.cancel()
            task.add_done_callback(_consume)


async def _authenticate(websocket: WebSocket, context: AppContext, timeout_s: float) -> tuple[Principal, str]:
    credential = _header_credential(websocket)
    if credential is None:
        raw = await asyncio.wait_for(_receive_text(websocket), timeout_s)
        message = json.loads(raw) if len(raw) <= MAX_MESSAGE_BYTES else {}
        if not isinstance(message, dict) or message.get("type") != "auth" or not isinstance(message.get("token"), str):
            raise AuthenticationFailed('Authentication required: send {"type": "auth", "token": "<token>"} first')
        credential = message["token"].removeprefix("Bearer ").strip()
    if not credential:
        raise AuthenticationFailed("Authentication required")
    return await principal_for(context, credential), credential


def _header_credential(websocket: WebSocket) -> str | None:
    authorization = websocket.headers.get("authorization", "")
    if authorization.lower().startswith("bearer ") and authorization[7:].strip():
        return authorization[7:].strip()
    return websocket.headers.get("x-api-key") or None


async def _viewer(context: AppContext, principal: Principal) -> Viewer:
    def organizations() -> frozenset[str]:
        with context.db.session() as session:
            return frozenset(session.scalars(member_organization_ids(principal.user_id)))

    return Viewer(principal.user_id, await run_in_threadpool(organizations), principal.is_admin, principal.scopes)


async def _refresh_viewer(context: AppContext, credential: str, connection: Connection) -> None:
    """Re-check the credential (revoked, expired key, disabled account, changed role) and the caller's
    organizations; returns when the credential no longer authenticates."""
    while True:
        await asyncio.sleep(VIEWER_REFRESH_S)
        try:
            principal = await principal_for(context, credential)
            connection.viewer = await _viewer(context, principal)
        except AuthenticationFailed:
            return
        except Exception as exc:  # a database hiccup keeps the last known view
            log.warning("WebSocket viewer refresh: %s", exc)


async def _expire(principal: Principal) -> None:
    if principal.token_expires_at:
        await asyncio.sleep(max(0.0, principal.token_expires_at - time.time()))
    else:
        await asyncio.Event().wait()  # API keys: no expiry while connected


async def _receive(websocket: WebSocket, connection: Connection, principal: Principal) -> None:
    while True:
        raw = await _receive_text(websocket)
        try:
            reply = _handle(raw, connection, principal)
        except DomainError as error:
            details = error.details
            reply = {
                "type": "error",
                **error_payload(error.code, error.message, correlation_id_of(websocket.scope), details),
            }
        await _send(websocket, reply)


async def _receive_text(websocket: WebSocket) -> str:
    """The next message as text (a binary frame is read as UTF-8; JSON parsing then judges it)."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    if message.get("text") is not None:
        return message["text"]
    return (message.get("bytes") or b"").decode("utf-8", errors="replace")


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished task's exception (a disconnect), so asyncio does not log it as unhandled."""
    if not task.cancelled():
        task.exception()


class _AsRequest:
    """What the rate limiter reads of a request, for a WebSocket's handshake."""

    method = "GET"

    def __init__(self, scope: Any) -> None:
        self.scope = scope


def _handle(raw: str, connection: Connection, principal: Principal) -> dict[str, Any]:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValidationFailed(f"Messages are limited to {MAX_MESSAGE_BYTES} bytes")
    try:
        message = json.loads(raw)
    except ValueError:
        raise ValidationFailed("Messages are JSON objects") from None
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "ping":
        return {"type": "pong", "timestamp": isoformat_z(utcnow())}
    if kind == "auth":
        return {"type": "authenticated", "data": {"user_id": principal.user_id, "role": principal.role.value}}
    if kind == "subscribe":
        subscription = subscriptions.parse(message.get("channel"), message.get("filters"))
        _authorize(principal, subscription.channel)
        connection.subscriptions[subscription.channel] = subscription
        return {"type": "subscribed", "data": subscription.describe()}
    if kind == "unsubscribe":
        channel = str(message.get("channel", "")).lower()
        if connection.subscriptions.pop(channel, None) is None:
            raise ValidationFailed("Not subscribed", details=[FieldIssue("channel", f"not subscribed to {channel!r}")])
        return {"type": "unsubscribed", "data": {"channel": channel}}
    raise ValidationFailed(
        "Unknown message type", details=[FieldIssue("type", "one of auth, subscribe, unsubscribe, ping")]
    )


def _authorize(principal: Principal, channel: str) -> None:
    if channel == "system" and not principal.is_admin:
        raise PermissionDenied("The system channel is for platform admins")
    principal.require_scope(channel, "read")


async def _send_events(
    websocket: WebSocket,
    connection: Connection,
    ping_interval_s: float,
    shape: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    while True:
        try:
            async with asyncio.timeout(ping_interval_s):  # a timer, not a task per message as wait_for makes
                event = await connection.queue.get()
        except TimeoutError:
            await _send(websocket, {"type": "ping", "timestamp": isoformat_z(utcnow())})
            continue
        await websocket.send_text(event.text(shape))


def _visible_run(context: AppContext, principal: Principal, execution_id: str) -> None:
    with context.db.session() as session:
        executions.get(session, principal, execution_id)


def _seed_message(message: dict[str, Any]) -> dict[str, Any]:
    """On `/ws/execution/{id}`, output as `execution_output` messages; the run's other events as everywhere."""
    if message["type"] != "execution.output":
        return _client_message(message)
    data = message["data"]
    return {
        "type": "execution_output",
        "execution_id": data.get("execution_id"),
        "node_id": data.get("node_id"),
        "output": data.get("text", ""),
        "timestamp": message["timestamp"],
    }


def _client_message(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": message["type"],
        "id": message["id"],
        "data": message["data"],
        "timestamp": message["timestamp"],
        "correlation_id": message.get("trace_id"),
    }


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    await websocket.send_text(json.dumps(message, separators=(",", ":"), default=str))


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code, reason[:120])
