"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request and breaks contextvars)."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import tracing
from core.text import snake_case
from serve_app.errors import error_payload
from serve_app.request_context import CORRELATION_HEADER, bind_correlation_id, correlation_id_from_headers

log = logging.getLogger("orchestrator.api")


class CorrelationIdMiddleware:
    """Gives every request a correlation id, echoes it on every response, and turns any exception that
    escaped the app into the 500 envelope (logged once, with its cause; never sent to the client)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        correlation_id = correlation_id_from_headers(scope.get("headers", []))
        bind_correlation_id(scope, correlation_id)
        tracing.tag_current_span(correlation_id)
        header = (CORRELATION_HEADER.lower().encode(), correlation_id.encode())
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if scope["type"] != "http" or response_started:
                raise
            body = json.dumps(error_payload("INTERNAL_ERROR", "Internal server error", correlation_id)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        header,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})


class BodySizeLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413, by Content-Length or while streaming (chunked
    bodies have none), before the app reads them into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: tuple[re.Pattern[str], int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # (path pattern, limit): upload routes take larger bodies than JSON routes.
        self.uploads = uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.max_bytes
        if self.uploads is not None and scope["method"] == "POST" and self.uploads[0].match(scope["path"]):
            max_bytes = self.uploads[1]
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
                await _send_too_large(scope, send, max_bytes)
                return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            # Answer 413 ourselves and tell the app the client left: frameworks turn any exception raised
            # while reading a body into their own 400, so raising here would not reach the client.
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    refused = True
                    await _send_too_large(scope, send, max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # after our 413, whatever the app still sends is dropped
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


async def _send_too_large(scope: Scope, send: Send, max_bytes: int) -> None:
    from serve_app.request_context import correlation_id_of

    body = json.dumps(
        error_payload("PAYLOAD_TOO_LARGE", f"Request body exceeds {max_bytes} bytes", correlation_id_of(scope))
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_NAMES_AS_VALUES = frozenset({"sort_by"})


class QueryCaseMiddleware:
    """Accept camelCase query parameters (`sortBy`, `createdAfter`) by rewriting them to snake_case,
    so that every route declares its parameters once (docs/api.md "Conventions"). The field a list is sorted
    by is a name too: `sortBy=createdAt`, as camelCase clients send it, is `sort_by=created_at`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("query_string", b"") if scope["type"] in ("http", "websocket") else b""
        if raw and any(65 <= byte <= 90 for byte in raw):  # only when an upper-case letter is present
            pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
            rewritten = [
                (name, snake_case(value) if name in _NAMES_AS_VALUES else value)
                for name, value in ((snake_case(key), value) for key, value in pairs)
            ]
            scope = {**scope, "query_string": urlencode(rewritten).encode("latin-1")}
        await self.app(scope, receive, send)
