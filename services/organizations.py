"""Organizations and their members: slugs unique, roles owner > admin > member.

Only owners and admins manage members; only owners grant or take the owner role; an organization always
keeps at least one owner.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from core.errors import Conflict, FieldIssue, NotFound, PermissionDenied, ValidationFailed
from persistence.models import Organization, OrganizationMember, User
from persistence.repositories.pages import Page, fetch_page
from services.principal import Principal

_SLUG_BODY = r"[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?"
_SLUG = re.compile(rf"^{_SLUG_BODY}$")
# A slug as _check_slug reads it (any case, spaces around), for the OpenAPI; a blank one is no slug (made from the
# name on create, left as it is on update).
SLUG_PATTERN = rf"(?i)^\s*({_SLUG_BODY})?\s*$"
TIERS = ("free", "pro", "enterprise")


class OrgRole(StrEnum):
    member = "member"
    admin = "admin"
    owner = "owner"

    @property
    def rank(self) -> int:
        return {"member": 0, "admin": 1, "owner": 2}[self.value]


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:100].strip("-") or "org"


def _check_slug(slug: str) -> str:
    slug = slug.strip().lower()
    if not _SLUG.match(slug):
        raise ValidationFailed(
            "Invalid slug",
            details=[FieldIssue("slug", "lowercase letters, digits and hyphens, not starting or ending with '-'")],
        )
    return slug


def _require_user_account(principal: Principal) -> None:
    if not principal.is_user_account:
        raise PermissionDenied("Organizations are managed by user accounts, not machine identities")


def membership(session: Session, organization_id: str, user_id: str) -> OrganizationMember | None:
    # populate_existing: after waiting on the organization's lock, read the row as committed now.
    return session.get(OrganizationMember, (organization_id, user_id), populate_existing=True)


def member_organization_ids(user_id: str):
    """A subquery of the organizations a user belongs to (for visibility filters)."""
    return select(OrganizationMember.organization_id).where(OrganizationMember.user_id == user_id)


def create_organization(
    session: Session, principal: Principal, *, name: str, slug: str | None, subscription_tier: str | None
) -> Organization:
    _require_user_account(principal)
    slug = _check_slug(slug) if slug else slugify(name)
    if session.scalar(select(Organization.id).where(Organization.slug == slug)) is not None:
        raise Conflict(f"The slug '{slug}' is taken", details=[FieldIssue("slug", "already in use")])
    organization = Organization(
        name=name, slug=slug, subscription_tier=subscription_tier or "free", created_by=principal.user_id
    )
    organization.members.append(OrganizationMember(user_id=principal.user_id, role=OrgRole.owner.value))
    session.add(organization)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create took the slug
        raise Conflict(f"The slug '{slug}' is taken") from exc
    return organization


def list_organizations(session: Session, principal: Principal, *, page: int, limit: int) -> Page[Organization]:
    query = select(Organization).order_by(Organization.created_at.desc(), Organization.id.desc())
    if not principal.is_admin:
        query = query.where(Organization.id.in_(member_organization_ids(principal.user_id)))
    return fetch_page(session, query, page=page, limit=limit)


def roles_of(session: Session, user_id: str, organization_ids: list[str]) -> dict[str, str]:
    if not organization_ids:
        return {}
    rows = session.execute(
        select(OrganizationMember.organization_id, OrganizationMember.role).where(
            OrganizationMember.user_id == user_id, OrganizationMember.organization_id.in_(organization_ids)
        )
    )
    return dict(rows.tuples().all())


def get_organization(session: Session, principal: Principal, organization_id: str) -> Organization:
    """The organization if the caller belongs to it (or is a platform admin); 404 otherwise."""
    organization = session.scalar(
        select(Organization)
        .where(Organization.id == organization_id)
        .options(selectinload(Organization.members).selectinload(OrganizationMember.user))
    )
    if organization is None:
        raise NotFound("Organization not found")
    if not principal.is_admin and membership(session, organization_id, principal.user_id) is None:
        raise NotFound("Organization not found")
    return organization


def _acting_role(session: Session, principal: Principal, organization: Organization) -> OrgRole:
    """The caller's organization role; platform admins act as owners."""
    if principal.is_admin:
        return OrgRole.owner
    member = membership(session, organization.id, principal.user_id)
    if member is None:
        raise NotFound("Organization not found")
    return OrgRole(member.role)


def _require_manager(session: Session, principal: Principal, organization: Organization) -> OrgRole:
    role = _acting_role(session, principal, organization)
    if role.rank < OrgRole.admin.rank:
        raise PermissionDenied("Only the organization's owners and admins may do this")
    return role


def update_organization(
    session: Session, principal: Principal, organization_id: str, changes: dict[str, Any]
) -> Organization:
    organization = get_organization(session, principal, organization_id)
    _require_manager(session, principal, organization)
    if changes.get("name"):
        organization.name = changes["name"]
    if changes.get("slug") and changes["slug"] != organization.slug:
        slug = _check_slug(changes["slug"])
        taken = session.scalar(
            select(Organization.id).where(Organization.slug == slug, Organization.id != organization.id)
        )
        if taken is not None:
            raise Conflict(f"The slug '{slug}' is taken", details=[FieldIssue("slug", "already in use")])
        organization.slug = slug
    if changes.get("subscription_tier"):
        organization.subscription_tier = changes["subscription_tier"]
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent change took the slug
        raise Conflict("The slug is taken", details=[FieldIssue("slug", "already in use")]) from exc
    return organization


def delete_organization(session: Session, principal: Principal, organization_id: str) -> None:
    organization = get_organization(session, principal, organization_id)
    if _acting_role(session, principal, organization) is not OrgRole.owner:
        raise PermissionDenied("Only an owner may delete the organization")
    session.delete(organization)


def _lock_organization(session: Session, organization_id: str) -> None:
    """Serialise membership changes of one organization, so that two owners leaving at once cannot both
    see the other as the remaining owner. SQLite writers are already serialised (persistence.db)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Organization.id).where(Organization.id == organization_id).with_for_update())


def _count_owners(session: Session, organization_id: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(OrganizationMember)
            .where(
                OrganizationMember.organization_id == organization_id, OrganizationMember.role == OrgRole.owner.value
            )
        )
        or 0
    )


def add_member(
    session: Session,
    principal: Principal,
    organization_id: str,
    *,
    user_id: str | None,
    email: str | None,
    role: OrgRole,
) -> OrganizationMember:
    organization = get_organization(session, principal, organization_id)
    acting = _require_manager(session, principal, organization)
    if role is OrgRole.owner and acting is not OrgRole.owner:
        raise PermissionDenied("Only an owner may add another owner")
    if not user_id and not email:
        raise ValidationFailed("Name the user to add", details=[FieldIssue("user_id", "user_id or email is required")])
    if user_id:
        user = session.get(User, user_id)
    else:
        user = session.scalar(select(User).where(User.email == (email or "").strip().lower()))
    if user is None:
        raise NotFound("User not found")
    if membership(session, organization_id, user.id) is not None:
        raise Conflict("This user is already a member")
    member = OrganizationMember(organization_id=organization_id, user_id=user.id, role=role.value)
    session.add(member)
    try:
        session.flush()
    except IntegrityError as exc:  # the same user added concurrently
        raise Conflict("This user is already a member") from exc
    return member


def update_member_role(
    session: Session, principal: Principal, organization_id: str, user_id: str, role: OrgRole
) -> OrganizationMember:
    organization = get_organization(session, principal, organization_id)
    _lock_organization(session, organization_id)
    acting = _require_manager(session, principal, organization)
    member = membership(session, organization_id, user_id)
    if member is None:
        raise NotFound("Member not found")
    current = OrgRole(member.role)
    if OrgRole.owner in (current, role) and acting is not OrgRole.owner:
        raise PermissionDenied("Only an owner may grant or take the owner role")
    if current is OrgRole.owner and role is not OrgRole.owner and _count_owners(session, organization_id) <= 1:
        raise Conflict("The last owner cannot be demoted; make another member owner first")
    member.role = role.value
    session.flush()
    return member


def remove_member(session: Session, principal: Principal, organization_id: str, user_id: str) -> None:
    organization = get_organization(session, principal, organization_id)
    _lock_organization(session, organization_id)
    leaving_self = user_id == principal.user_id
    acting = (
        _acting_role(session, principal, organization)
        if leaving_self
        else _require_manager(session, principal, organization)
    )
    member = membership(session, organization_id, user_id)
    if member is None:
        raise NotFound("Member not found")
    if member.role == OrgRole.owner.value:
        if not leaving_self and acting is not OrgRole.owner:
            raise PermissionDenied("Only an owner may remove another owner")
        if _count_owners(session, organization_id) <= 1:
            raise Conflict("The last owner cannot leave; make another member owner or delete the organization")
    session.delete(member)
