"""API key / OAuth scopes: `resource:action`, narrowing what a role may do (docs/api.md "Authentication and
authorization")."""

from __future__ import annotations

from collections.abc import Iterable

from core.errors import FieldIssue, ValidationFailed

RESOURCES = (
    "users",
    "organizations",
    "api_keys",
    "agents",
    "configurations",
    "marketplace",
    "workflows",
    "executions",
    "tasks",
    "approvals",
    "events",
    "projects",
    "webhooks",
    "dashboard",
    "system",
    "settings",
    "notifications",
)
ACTIONS = ("read", "write")
# One scope as normalize_scopes reads it, for the OpenAPI of the fields it reads: `*`, or `resource:action`
# with `*` for either part, in any case.
_SCOPE = rf"(\*|({'|'.join(RESOURCES)}|\*):({'|'.join(ACTIONS)}|\*))"
SCOPE_PATTERN = rf"(?i)^\s*{_SCOPE}\s*$"
# OAuth's `scope`: scopes separated by spaces (or commas).
SCOPE_LIST_PATTERN = rf"(?i)^[\s,]*({_SCOPE}([\s,]+{_SCOPE})*)?[\s,]*$"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def normalize_scopes(scopes: Iterable[str], field: str = "permissions") -> list[str]:
    """Validate and de-duplicate scopes; `*`, `resource:*` and `*:read` are accepted wildcards."""
    result: list[str] = []
    issues: list[FieldIssue] = []
    for raw in scopes:
        scope = raw.strip().lower()
        if scope == "*":
            result.append(scope)
            continue
        resource, _, action = scope.partition(":")
        if (resource not in RESOURCES and resource != "*") or action not in (*ACTIONS, "*"):
            issues.append(FieldIssue(field, f"unknown scope '{raw}' (use resource:read|write, e.g. tasks:read)"))
        elif scope not in result:
            result.append(scope)
    if issues:
        raise ValidationFailed("Invalid scopes", details=issues)
    return result


def scope_allows(scopes: Iterable[str], resource: str, action: str) -> bool:
    wanted = {f"{resource}:{action}", f"{resource}:*", f"*:{action}", "*:*", "*"}
    # write implies read, as a key allowed to change a resource may also look at it.
    if action == "read":
        wanted.add(f"{resource}:write")
    return any(scope in wanted for scope in scopes)


def action_for_method(method: str) -> str:
    return "read" if method.upper() in READ_METHODS else "write"
