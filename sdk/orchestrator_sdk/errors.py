"""Typed errors. Each carries the platform's error envelope `{"error": {code, message, details, timestamp,
correlation_id}}` and the HTTP status; one subclass per code, so `except NotFound:` reads naturally."""

from __future__ import annotations

from typing import Any

import httpx


class OrchestratorError(Exception):
    """Any error the SDK raises about the platform. `code` is the envelope's code (`NOT_FOUND` …),
    `status` the HTTP status (None when no response arrived)."""

    code: str = "ERROR"
    status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: list[dict[str, Any]] | None = None,
        correlation_id: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or []
        self.correlation_id = correlation_id
        self.response = response

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}" if self.status is None else f"{self.status} {self.code}: {self.message}"
        if self.details:
            text += " (" + "; ".join(f"{d.get('field')}: {d.get('message')}" for d in self.details) + ")"
        if self.correlation_id:
            text += f" [correlation_id={self.correlation_id}]"
        return text


class APIConnectionError(OrchestratorError):
    """The platform could not be reached (after the retries an idempotent request gets)."""

    code = "CONNECTION_ERROR"


class ValidationError(OrchestratorError):
    code, status = "VALIDATION_ERROR", 422


class AuthenticationError(OrchestratorError):
    code, status = "AUTHENTICATION_ERROR", 401


class AuthorizationError(OrchestratorError):
    code, status = "AUTHORIZATION_ERROR", 403


class NotFound(OrchestratorError):
    code, status = "NOT_FOUND", 404


class MethodNotAllowed(OrchestratorError):
    code, status = "METHOD_NOT_ALLOWED", 405


class Conflict(OrchestratorError):
    code, status = "CONFLICT", 409


class InvalidTransition(Conflict):
    code = "INVALID_TRANSITION"


class PayloadTooLarge(OrchestratorError):
    code, status = "PAYLOAD_TOO_LARGE", 413


class RateLimited(OrchestratorError):
    """429 after the retries; `retry_after` is the server's `Retry-After` in seconds."""

    code, status = "RATE_LIMIT_EXCEEDED", 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InternalError(OrchestratorError):
    code, status = "INTERNAL_ERROR", 500


class ServiceUnavailable(OrchestratorError):
    code, status = "SERVICE_UNAVAILABLE", 503


class FrameworkUnavailable(ValidationError):
    code = "FRAMEWORK_UNAVAILABLE"


class InsufficientResources(ValidationError):
    code = "INSUFFICIENT_RESOURCES"


class DeploymentFailed(ValidationError):
    code = "DEPLOYMENT_FAILED"


class NotAvailable(OrchestratorError):
    """The platform has no route for this feature yet (it answered 404 for the route itself)."""

    code = "NOT_AVAILABLE"


class RunFailed(OrchestratorError):
    """A workflow run ended `failed`, `cancelled` or `timeout`. `step` is the node that failed, `error` its
    error, `traceback` the remote traceback when the platform recorded one, `run` the finished run."""

    code = "RUN_FAILED"

    def __init__(
        self,
        message: str,
        *,
        run: Any = None,
        step: str | None = None,
        error: str | None = None,
        traceback: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.run, self.step, self.error, self.traceback = run, step, error, traceback

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n--- remote traceback ---\n{self.traceback}" if self.traceback else text


_CODED = (
    ValidationError,
    AuthenticationError,
    AuthorizationError,
    NotFound,
    MethodNotAllowed,
    Conflict,
    InvalidTransition,
    PayloadTooLarge,
    RateLimited,
    InternalError,
    ServiceUnavailable,
    FrameworkUnavailable,
    InsufficientResources,
    DeploymentFailed,
)
_BY_CODE: dict[str, type[OrchestratorError]] = {cls.code: cls for cls in _CODED}
_BY_STATUS: dict[int, type[OrchestratorError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
    500: InternalError,
    503: ServiceUnavailable,
}


def retry_after_of(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> OrchestratorError:
    """The typed error of a non-2xx answer: by the envelope's code, else by the HTTP status."""
    envelope: dict[str, Any] = {}
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            envelope = body["error"]
    except ValueError:
        pass
    code = envelope.get("code")
    status = response.status_code
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or (InternalError if status >= 500 else OrchestratorError)
    message = envelope.get("message") or response.reason_phrase or f"HTTP {status}"
    kwargs: dict[str, Any] = {
        "code": code or cls.code,
        "status": status,
        "details": envelope.get("details") if isinstance(envelope.get("details"), list) else [],
        "correlation_id": envelope.get("correlation_id") or response.headers.get("X-Correlation-ID"),
        "response": response,
    }
    if cls is RateLimited:
        return RateLimited(message, retry_after=retry_after_of(response), **kwargs)
    return cls(message, **kwargs)
