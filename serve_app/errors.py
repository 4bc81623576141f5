"""The error envelope (docs/api.md "Errors") and the one table that maps exceptions onto it.

Every error leaves the API as ``{"error": {code, message, details, timestamp, correlation_id}}``:
domain errors, unknown routes, wrong methods, malformed JSON, validation errors and crashes alike.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.clock import isoformat_z, utcnow
from core.errors import (
    AuthenticationFailed,
    DomainError,
    FieldIssue,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    ValidationFailed,
)
from core.text import snake_case
from serve_app.request_context import correlation_id_of

log = logging.getLogger("orchestrator.api")

_HTTP_STATUS_TO_ERROR: dict[int, type[DomainError]] = {
    400: MalformedRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_payload(code: str, message: str, correlation_id: str, details: list[FieldIssue] | None = None) -> dict:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": [{"field": d.field, "message": d.message} for d in details or []],
            "timestamp": isoformat_z(utcnow()),
            "correlation_id": correlation_id,
        }
    }


def error_response(request: Request, error: DomainError, headers: dict[str, str] | None = None) -> JSONResponse:
    correlation_id = correlation_id_of(request.scope)
    headers = dict(headers or {})
    if isinstance(error, RateLimited) or error.status == 503:
        headers.setdefault("Retry-After", str(getattr(error, "retry_after_s", ServiceUnavailable.retry_after_s)))
    if isinstance(error, AuthenticationFailed):
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(
        error_payload(error.code, error.message, correlation_id, error.details),
        status_code=error.status,
        headers=headers,
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if exc.status >= 500:
        log.error(
            "request failed: %s %s -> %s: %s",
            request.method,
            request.url.path,
            exc.code,
            exc,
            exc_info=exc.__cause__ is not None,
        )
    return error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_cls = _HTTP_STATUS_TO_ERROR.get(exc.status_code, DomainError)
    if exc.status_code == 404:
        error: DomainError = NotFound(f"No route for {request.method} {request.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"Method {request.method} is not allowed for {request.url.path}")
        allowed = ", ".join(_allowed_methods(request)) or (exc.headers or {}).get("Allow", "")
        return error_response(request, error, headers={"Allow": allowed})
    else:
        message = exc.detail if isinstance(exc.detail, str) else None
        error = error_cls(message)
        error.status = exc.status_code
    return error_response(request, error, headers=dict(exc.headers or {}))


def _allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI description documents for this path (each method is a route of its own, so
    Starlette's `Allow` names only the first one's)."""
    path = request.scope["path"]
    for pattern, methods in _documented_methods(request.app):
        if pattern.fullmatch(path):
            return methods
    return []


def _documented_methods(app: FastAPI) -> list[tuple[re.Pattern[str], list[str]]]:
    cached = getattr(app.state, "documented_methods", None)
    if cached is None:
        cached = [
            (
                re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))),
                sorted(method.upper() for method in item if method in {"get", "post", "put", "patch", "delete"}),
            )
            for template, item in app.openapi().get("paths", {}).items()
        ]
        app.state.documented_methods = cached
    return cached


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(request, MalformedRequest("Request body is not valid JSON"))
    details = [FieldIssue(_field_name(err.get("loc", ())), _clean_message(err)) for err in errors]
    return error_response(request, ValidationFailed("Request validation failed", details=details))


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "email") -> "email"; ("query", "limit") -> "limit"; nested -> "a.b.0".
    parts = [str(part) for part in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    # Named as responses name them (snake_case), whichever spelling the client sent.
    return ".".join(snake_case(part) for part in parts) or "body"


def _clean_message(err: dict[str, Any]) -> str:
    message = str(err.get("msg", "invalid value"))
    if err.get("type") == "missing":
        return "Field is required"
    return message.removeprefix("Value error, ")


def _warn_database(request: Request, exc: Exception, what: str) -> None:
    """One line naming the driver's error class only: its message may quote the request's values."""
    driver_error = type(getattr(exc, "orig", exc)).__name__
    log.warning("request %s %s: %s: %s", request.method, request.url.path, what, driver_error)


async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value the request carried that validation let through (a NUL character in a
    # text, a number out of its column's range): the client's error, and nothing was written.
    _warn_database(request, exc, "the database refused a value")
    return error_response(
        request,
        ValidationFailed(
            "A value in the request cannot be stored (a NUL character in a text, or a number out of range)"
        ),
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The database went away under the request (connections cut, a failover, a restart): nothing was
    # committed, and the pool replaces the broken connection, so the same request can be sent again.
    _warn_database(request, exc, "the database is unavailable")
    error = ServiceUnavailable("The database is unavailable; try again shortly")
    error.retry_after_s = 2
    return error_response(request, error)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(DataError, _unstorable_value)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
