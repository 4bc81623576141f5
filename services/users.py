"""Accounts: registration, password login and profiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import (
    AuthenticationFailed,
    Conflict,
    FieldIssue,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from persistence.models import User
from persistence.repositories import users as users_repo
from services import events
from services.passwords import hash_password, needs_rehash, verify_password
from services.principal import Role

# Serialises "is this the first account?" across API replicas on Postgres. SQLite writers are already
# serialised by BEGIN IMMEDIATE (persistence.db).
_FIRST_ACCOUNT_LOCK_KEY = 0x0A11CE


@dataclass(frozen=True, slots=True)
class RegistrationPolicy:
    allow_registration: bool
    default_role: Role
    password_min_length: int


def check_password_strength(password: str, *, min_length: int) -> None:
    issues = []
    if len(password) < min_length:
        issues.append(FieldIssue("password", f"Password must be at least {min_length} characters"))
    if len(password) > 1024:
        issues.append(FieldIssue("password", "Password must be at most 1024 characters"))
    if password.strip() == "" or len(set(password)) < 4:
        issues.append(FieldIssue("password", "Password is too simple"))
    if issues:
        raise ValidationFailed("Password does not meet the requirements", details=issues)


def prepare_password(password: str, policy: RegistrationPolicy) -> str:
    """Check and hash a new password. Hashing costs ~50 ms of CPU: do it before opening a transaction."""
    check_password_strength(password, min_length=policy.password_min_length)
    return hash_password(password)


def register_user(
    session: Session,
    *,
    email: str,
    password_hash: str,
    first_name: str | None,
    last_name: str | None,
    policy: RegistrationPolicy,
    role: Role | None = None,
    bypass_policy: bool = False,
) -> User:
    """Create an account. The first account on an empty platform becomes admin (docs/api.md "Identity and access")."""
    if not (policy.allow_registration or bypass_policy):
        raise PermissionDenied("Self-registration is disabled on this platform")
    email = email.strip().lower()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FIRST_ACCOUNT_LOCK_KEY})
    if users_repo.get_user_by_email(session, email) is not None:
        raise Conflict("An account with this email already exists", details=[FieldIssue("email", "already registered")])
    if role is None:
        role = Role.admin if users_repo.count_users(session) == 0 else policy.default_role
    user = User(
        email=email,
        password_hash=password_hash,
        first_name=first_name,
        last_name=last_name,
        role=role.value,
        preferences={},
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent registration of the same email won the race
        raise Conflict("An account with this email already exists") from exc
    # The new account's own event (and admins'): the email is theirs to see.
    events.emit(
        session,
        "user.registered",
        {"user_id": user.id, "email": user.email, "role": user.role},
        source="auth",
        owner=_Self(user.id),
        subject_id=user.id,
    )
    return user


@dataclass(frozen=True)
class _Self:
    owner_id: str
    owner_type: str = "user"


def authenticate_password(session: Session, *, email: str, password: str) -> User:
    """The user for these credentials, or AuthenticationFailed without saying which part was wrong.

    Read-only: the slow hash check runs outside any write transaction; `record_login` writes after.
    """
    user = users_repo.get_user_by_email(session, email.strip())
    if not verify_password(user.password_hash if user else None, password) or user is None:
        raise AuthenticationFailed("Invalid email or password")
    if not user.is_active:
        raise AuthenticationFailed("This account is disabled")
    return user


def record_login(session: Session, user_id: str, *, password: str) -> User:
    user = get_active_user(session, user_id)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    return user


def get_active_user(session: Session, user_id: str) -> User:
    user = users_repo.get_user(session, user_id)
    if user is None or not user.is_active:
        # The token is valid but its account is gone or disabled: the caller is not authenticated.
        raise AuthenticationFailed("Account not found or disabled")
    return user


def update_profile(session: Session, user_id: str, changes: dict[str, Any]) -> User:
    user = users_repo.get_user(session, user_id)
    if user is None:
        raise NotFound("User not found")
    for field in ("first_name", "last_name"):
        if field in changes:
            setattr(user, field, changes[field])
    if "preferences" in changes and changes["preferences"] is not None:
        # Merge, so a client that sends one preference does not erase the others.
        user.preferences = {**(user.preferences or {}), **changes["preferences"]}
    user.updated_at = utcnow()
    return user
