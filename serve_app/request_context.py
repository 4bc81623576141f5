"""Per-request context: the correlation id, read from the request's headers and kept in the ASGI scope and in
`core.context.correlation_id_var` (for logs, events and spans)."""

from __future__ import annotations

import re
import uuid
from collections.abc import MutableMapping
from typing import Any

from core.context import correlation_id_var

CORRELATION_HEADER = "X-Correlation-ID"
_SCOPE_KEY = "orchestrator.correlation_id"
# Callers' ids are echoed into headers and logs: accept only a short, safe token.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def correlation_id_from_headers(headers: list[tuple[bytes, bytes]]) -> str:
    wanted = {b"x-correlation-id": None, b"x-request-id": None}
    for name, value in headers:
        lowered = name.lower()
        if lowered in wanted and wanted[lowered] is None:
            wanted[lowered] = value
    for candidate in (wanted[b"x-correlation-id"], wanted[b"x-request-id"]):
        if candidate:
            text = candidate.decode("latin-1").strip()
            if _SAFE_ID.match(text):
                return text
    return str(uuid.uuid4())


def bind_correlation_id(scope: MutableMapping[str, Any], correlation_id: str) -> None:
    scope[_SCOPE_KEY] = correlation_id
    correlation_id_var.set(correlation_id)


def correlation_id_of(scope: MutableMapping[str, Any]) -> str:
    return scope.get(_SCOPE_KEY) or correlation_id_var.get()
