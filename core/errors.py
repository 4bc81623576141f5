"""Domain exceptions: the only errors that layers below the routes raise.

Each carries the API error code and HTTP status of the error envelope (docs/api.md "Errors"); `serve_app.errors` renders
them. Nothing here knows about HTTP frameworks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldIssue:
    field: str
    message: str


class DomainError(Exception):
    code: str = "INTERNAL_ERROR"
    status: int = 500
    default_message: str = "Internal server error"

    def __init__(self, message: str | None = None, *, details: list[FieldIssue] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or []
        super().__init__(self.message)


class ValidationFailed(DomainError):
    code, status, default_message = "VALIDATION_ERROR", 422, "Request validation failed"


class MalformedRequest(DomainError):
    code, status, default_message = "VALIDATION_ERROR", 400, "Malformed request body"


class AuthenticationFailed(DomainError):
    code, status, default_message = "AUTHENTICATION_ERROR", 401, "Authentication required"


class PermissionDenied(DomainError):
    code, status, default_message = "AUTHORIZATION_ERROR", 403, "Insufficient permissions"


class NotFound(DomainError):
    code, status, default_message = "NOT_FOUND", 404, "Resource not found"


class MethodNotAllowed(DomainError):
    code, status, default_message = "METHOD_NOT_ALLOWED", 405, "Method not allowed"


class PayloadTooLarge(DomainError):
    code, status, default_message = "PAYLOAD_TOO_LARGE", 413, "Request body too large"


class Conflict(DomainError):
    code, status, default_message = "CONFLICT", 409, "Resource conflict"


class InvalidTransition(DomainError):
    code, status, default_message = "INVALID_TRANSITION", 409, "Transition not allowed from the current state"


class RateLimited(DomainError):
    code, status, default_message = "RATE_LIMIT_EXCEEDED", 429, "Rate limit exceeded"

    def __init__(self, message: str | None = None, *, retry_after_s: int) -> None:
        super().__init__(message or f"Rate limit exceeded. Try again in {retry_after_s} seconds.")
        self.retry_after_s = retry_after_s


class ServiceUnavailable(DomainError):
    code, status, default_message = "SERVICE_UNAVAILABLE", 503, "Service temporarily unavailable"
    # Every 503 tells the client when to try again (`Retry-After`).
    retry_after_s = 5


class FrameworkUnavailable(DomainError):
    """The agent's framework has no installed adapter (the message names the extra to install)."""

    code, status, default_message = "FRAMEWORK_UNAVAILABLE", 422, "No adapter is installed for this framework"


class InsufficientResources(DomainError):
    """No node of the cluster, and no node type it can scale to, can ever hold the request."""

    code, status, default_message = "INSUFFICIENT_RESOURCES", 422, "The cluster cannot provide these resources"


class DeploymentFailed(DomainError):
    """The agent's actor could not start (its framework runtime failed to load)."""

    code, status, default_message = "DEPLOYMENT_FAILED", 422, "The agent could not be deployed"


class WorkspaceError(DomainError):
    """A workspace path that leaves the workspace, or a file or workspace past its limits."""

    code, status, default_message = "WORKSPACE_ERROR", 422, "Workspace operation refused"


class SandboxUnavailable(DomainError):
    """No sandbox as strong as settings require works on this host (`orchestrator doctor` says why)."""

    code, status, default_message = "SANDBOX_UNAVAILABLE", 503, "No sandbox is available to run this file"


# Every code the API can answer with, for the OpenAPI description and the docs.
ERROR_CODES: dict[str, int] = {
    cls.code: cls.status
    for cls in (
        ValidationFailed,
        AuthenticationFailed,
        PermissionDenied,
        NotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        Conflict,
        InvalidTransition,
        RateLimited,
        ServiceUnavailable,
        FrameworkUnavailable,
        InsufficientResources,
        DeploymentFailed,
        WorkspaceError,
        SandboxUnavailable,
        DomainError,
    )
}


def refuse_read_only(changes: dict, editable: frozenset[str]) -> None:
    """422 naming every field of an update that may not be changed."""
    unknown = set(changes) - editable
    if unknown:
        raise ValidationFailed(
            "Fields cannot be changed", details=[FieldIssue(f, "read-only") for f in sorted(unknown)]
        )
