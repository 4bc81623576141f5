"""Code bundles: the functions a client ships with a Python-defined workflow (docs/sdk.md "Python-defined
workflows").

A bundle is stored as the bytes the client sent, under the SHA-256 of those bytes and its owner; the same
code sent again is found, not stored twice. Nothing here deserializes it: `load` hands the bytes to the
run actor that needs them, and only runs of graphs that name a bundle load one, each in a process of its
own (`isolated` in the run's options). Only roles listed in `ORCHESTRATOR_CODE_SUBMISSION_ROLES` may ship
code.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.errors import FieldIssue, NotFound, PayloadTooLarge, PermissionDenied, ValidationFailed
from core.settings import Settings
from persistence.models import CodeBundle
from services.principal import Principal

SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The client's Python, major.minor: what a run's worker must match to load the bundle.
PYTHON_VERSION = re.compile(r"^3\.\d{1,2}$")


def check_may_submit(principal: Principal, settings: Settings) -> None:
    allowed = settings.workflows.code_roles
    if principal.role.value not in allowed:
        raise PermissionDenied(
            f"Your role ({principal.role.value}) may not ship code; allowed: {', '.join(sorted(allowed)) or 'none'} "
            "(ORCHESTRATOR_CODE_SUBMISSION_ROLES)"
        )


def put(
    session: Session,
    principal: Principal,
    settings: Settings,
    sha256: str,
    data: bytes,
    *,
    python: str,
    functions: list[str],
) -> tuple[dict[str, Any], bool]:
    """Store the bundle (the caller's own); (its description, whether it was new)."""
    check_may_submit(principal, settings)
    if not SHA256.fullmatch(sha256):
        raise ValidationFailed("Invalid bundle id", details=[FieldIssue("sha256", "64 lowercase hex digits")])
    limit = settings.workflows.code_bundle_max_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"A code bundle may be at most {limit} bytes")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValidationFailed(
            "The bundle's bytes do not match its SHA-256", details=[FieldIssue("sha256", "mismatch")]
        )
    if not PYTHON_VERSION.fullmatch(python):
        raise ValidationFailed("Invalid Python version", details=[FieldIssue("python", "major.minor, e.g. 3.11")])
    key = ("user", principal.user_id, sha256)
    existing = session.get(CodeBundle, key)
    if existing is not None:
        return describe(existing), False
    bundle = CodeBundle(
        owner_type="user",
        owner_id=principal.user_id,
        sha256=sha256,
        size=len(data),
        python=python,
        functions=[str(name)[:200] for name in functions][:500],
        data=data,
        created_by=principal.user_id,
    )
    session.add(bundle)
    session.flush()
    return describe(bundle), True


def get(session: Session, principal: Principal, sha256: str) -> dict[str, Any]:
    bundle = session.get(CodeBundle, ("user", principal.user_id, sha256)) if SHA256.fullmatch(sha256) else None
    if bundle is None:
        raise NotFound("Code bundle not found")
    return describe(bundle)


def load(session: Session, owner: tuple[str, str], created_by: str | None, sha256: str) -> tuple[bytes, str]:
    """A run's bundle (its bytes and the Python it was made with): the run owner's, or its creator's (a user
    running an organization's workflow)."""
    candidates = [(CodeBundle.owner_type == owner[0]) & (CodeBundle.owner_id == owner[1])]
    if created_by:
        candidates.append((CodeBundle.owner_type == "user") & (CodeBundle.owner_id == created_by))
    query = select(CodeBundle.data, CodeBundle.python).where(CodeBundle.sha256 == sha256, or_(*candidates))
    found = session.execute(query.limit(1)).first()
    if found is None:
        raise NotFound(f"code bundle {sha256[:12]}… is not this run's owner's")
    return found.data, found.python


def uses_bundles(graph: dict[str, Any]) -> bool:
    """Whether a graph runs shipped code (a node naming a `bundle`): its runs get a process of their own."""
    return any(isinstance(node, dict) and (node.get("config") or {}).get("bundle") for node in graph.get("nodes", []))


def describe(bundle: CodeBundle) -> dict[str, Any]:
    return {
        "sha256": bundle.sha256,
        "size": bundle.size,
        "python": bundle.python,
        "functions": list(bundle.functions or []),
        "created_at": bundle.created_at,
    }
