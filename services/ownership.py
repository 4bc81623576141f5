"""Tenancy in one place: who may see and change an owned resource (docs/api.md "Authentication and
authorization").

A caller sees what they own, what their organizations own, and public items; platform admins see all.
Anything else is 404, never 403, so that ids do not reveal what exists. Resources use it in one line:

    query = query.where(visible_to(Agent, principal))            # lists
    agent = get_visible(session, Agent, agent_id, principal)      # reads
    agent = get_writable(session, Agent, agent_id, principal)     # writes
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import ColumnElement, and_, or_, true
from sqlalchemy.orm import Session

from core.errors import FieldIssue, NotFound, PermissionDenied, ValidationFailed
from persistence.base import OwnedMixin
from persistence.models import Organization
from services.organizations import member_organization_ids, membership
from services.principal import Principal

T = TypeVar("T", bound=OwnedMixin)

USER, ORGANIZATION = "user", "organization"


def owned_by(model: type[OwnedMixin], principal: Principal) -> ColumnElement[bool]:
    """Items the caller or one of their organizations owns (admins: all)."""
    if principal.is_admin:
        return true()
    return or_(
        and_(model.owner_type == USER, model.owner_id == principal.user_id),
        and_(model.owner_type == ORGANIZATION, model.owner_id.in_(member_organization_ids(principal.user_id))),
    )


def visible_to(model: type[OwnedMixin], principal: Principal) -> ColumnElement[bool]:
    """What the caller may see: what they own, and public items."""
    if principal.is_admin:
        return true()
    return or_(owned_by(model, principal), model.is_public.is_(True))


def _owns(session: Session, item: OwnedMixin, principal: Principal) -> bool:
    if principal.is_admin:
        return True
    if item.owner_type == USER:
        return item.owner_id == principal.user_id
    return membership(session, item.owner_id, principal.user_id) is not None


def can_see(session: Session, item: OwnedMixin, principal: Principal) -> bool:
    return item.is_public or _owns(session, item, principal)


def can_write(session: Session, item: OwnedMixin, principal: Principal) -> bool:
    return _owns(session, item, principal)


def get_visible(session: Session, model: type[T], item_id: str, principal: Principal) -> T:
    item = session.get(model, item_id)
    if item is None or not can_see(session, item, principal):
        raise NotFound(f"{model.__name__} not found")
    return item


def get_writable(session: Session, model: type[T], item_id: str, principal: Principal) -> T:
    """The item if the caller may change it: 404 if they cannot see it, 403 if it is only public to them."""
    item = get_visible(session, model, item_id, principal)
    if not _owns(session, item, principal):
        raise PermissionDenied(f"This {model.__name__} is public but not yours to change")
    return item


def resolve_owner(
    session: Session, principal: Principal, owner_type: str | None, owner_id: str | None
) -> tuple[str, str]:
    """The owner of a resource being created: the caller, or one of their organizations."""
    owner_type = (owner_type or USER).lower()
    if owner_type == USER:
        if owner_id and owner_id != principal.user_id and not principal.is_admin:
            raise PermissionDenied("You can create resources only for yourself or your organizations")
        return USER, owner_id or principal.user_id
    if owner_type != ORGANIZATION:
        raise ValidationFailed("Invalid owner_type", details=[FieldIssue("owner_type", "user or organization")])
    if not owner_id:
        raise ValidationFailed("owner_id is required", details=[FieldIssue("owner_id", "the organization's id")])
    # Any member may create for their organization; a non-member learns nothing about it.
    if principal.is_admin:
        if session.get(Organization, owner_id) is None:
            raise NotFound("Organization not found")
    elif membership(session, owner_id, principal.user_id) is None:
        raise NotFound("Organization not found")
    return ORGANIZATION, owner_id
