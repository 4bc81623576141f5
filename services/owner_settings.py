"""Settings of a user or an organization (`GET/POST /settings`): an LLM provider for the built-in role
agents of requirement pipelines, and preferences.

Provider keys are encrypted with the platform's `SecretBox` before they are stored; what is returned is a
hint (`sk-…abcd`, kept beside the ciphertext). Only `provider_for`, called where a run starts its steps,
decrypts them. They are never logged, and never reach a sandboxed process (it starts from an empty
environment).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.crypto import SecretBox
from core.errors import NotFound, PermissionDenied
from persistence.models import OwnerSettings
from services.organizations import OrgRole, membership
from services.principal import Principal

SECRET_FIELDS = ("openai_api_key", "anthropic_api_key")
PLAIN_FIELDS = ("openai_base_url", "llm_model", "default_priority", "auto_save")
DEFAULTS: dict[str, Any] = {"openai_base_url": None, "llm_model": None, "default_priority": 5, "auto_save": True}
USER, ORGANIZATION = "user", "organization"


def mask(secret: str) -> str:
    """Enough to recognise a key, not to use it: its first three and last four characters."""
    return f"{secret[:3]}…{secret[-4:]}" if len(secret) >= 12 else "…"


def owner_of(session: Session, principal: Principal, organization_id: str | None, *, write: bool) -> tuple[str, str]:
    """Whose settings: the caller's, or an organization's (read by its members, changed by its owners and
    admins; anyone else learns nothing of it)."""
    if not organization_id:
        return USER, principal.user_id
    if principal.is_admin:
        return ORGANIZATION, organization_id
    member = membership(session, organization_id, principal.user_id)
    if member is None:
        raise NotFound("Organization not found")
    if write and OrgRole(member.role).rank < OrgRole.admin.rank:
        raise PermissionDenied("Only the organization's owners and admins may change its settings")
    return ORGANIZATION, organization_id


def read(session: Session, owner: tuple[str, str]) -> dict[str, Any]:
    row = session.get(OwnerSettings, owner)
    return _shown(row)


def save(session: Session, owner: tuple[str, str], changes: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """Apply the fields given: a secret set to null or "" is removed, another field set to null is back to
    its default; fields not given keep their values."""
    row = session.get(OwnerSettings, owner, with_for_update=True)
    if row is None:
        row = OwnerSettings(owner_type=owner[0], owner_id=owner[1], values={}, secrets={})
        session.add(row)
    values, secrets = dict(row.values or {}), dict(row.secrets or {})
    for name, value in changes.items():
        if name in SECRET_FIELDS:
            if value:
                secrets[name] = {"ciphertext": box.encrypt(str(value)), "hint": mask(str(value))}
            else:
                secrets.pop(name, None)
        elif name in PLAIN_FIELDS:
            if value is None:  # not stored: `default_priority: null` must not make the settings unreadable
                values.pop(name, None)
            else:
                values[name] = value
    row.values, row.secrets = values, secrets
    session.flush()
    return _shown(row)


def provider_for(
    session: Session, box: SecretBox, *, user_id: str | None, owner: tuple[str, str], platform: dict[str, Any]
) -> dict[str, Any]:
    """The OpenAI-compatible provider a run's role agents use: each field from the user who started it, else
    from the owning organization, else the platform's settings."""
    layers = [platform]
    if owner[0] == ORGANIZATION:
        layers.append(_provider(session.get(OwnerSettings, owner), box))
    if user_id:
        layers.append(_provider(session.get(OwnerSettings, (USER, user_id)), box))
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({key: value for key, value in layer.items() if value})
    return merged


def _provider(row: OwnerSettings | None, box: SecretBox) -> dict[str, Any]:
    if row is None:
        return {}
    secret = (row.secrets or {}).get("openai_api_key")
    return {
        "base_url": (row.values or {}).get("openai_base_url"),
        "model": (row.values or {}).get("llm_model"),
        "api_key": box.decrypt(secret["ciphertext"]) if secret else None,
    }


def _shown(row: OwnerSettings | None) -> dict[str, Any]:
    # A null stored before `save` dropped them reads as the default.
    values = {**DEFAULTS, **{k: v for k, v in (row.values if row else {}).items() if v is not None}}
    shown = {name: values.get(name) for name in PLAIN_FIELDS}
    secrets = row.secrets if row else {}
    for name in SECRET_FIELDS:
        shown[name] = secrets[name]["hint"] if name in secrets else None
    shown["updated_at"] = row.updated_at if row else None
    return shown
