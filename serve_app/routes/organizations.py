"""Organizations and members (docs/api.md "Identity and access"). Non-members get 404 for an organization, never 403."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response, status

from persistence.models import Organization, OrganizationMember
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import PageParams, page_params, paginated
from serve_app.routing import protected_router
from serve_app.schemas.common import MessageResponse
from serve_app.schemas.identity import (
    MemberAdd,
    MemberOut,
    MemberUpdate,
    OrganizationCreate,
    OrganizationDetail,
    OrganizationList,
    OrganizationOut,
    OrganizationUpdate,
)
from services import organizations as orgs
from services.principal import Principal

router = protected_router(prefix="/organizations", tags=["organizations"], resource="organizations")


def _member_out(member: OrganizationMember) -> MemberOut:
    return MemberOut(
        id=f"{member.organization_id}:{member.user_id}",
        user_id=member.user_id,
        email=member.user.email,
        role=member.role,
        joined_at=member.joined_at,
    )


def _detail(organization: Organization, principal: Principal) -> OrganizationDetail:
    members = [_member_out(member) for member in organization.members]
    role = next((m.role for m in organization.members if m.user_id == principal.user_id), None)
    return OrganizationDetail(
        **OrganizationOut.model_validate(organization).model_dump(exclude={"role"}), role=role, members=members
    )


@router.get("", response_model=OrganizationList)
def list_organizations(
    request: Request, principal: CurrentPrincipal, context: Context, params: Annotated[PageParams, Depends(page_params)]
) -> dict:
    """The caller's organizations with their role in each (platform admins: all)."""
    with context.db.session() as session:
        page = orgs.list_organizations(session, principal, page=params.page, limit=params.limit)
        roles = orgs.roles_of(session, principal.user_id, [o.id for o in page.items])
        items = [
            OrganizationOut(**OrganizationOut.model_validate(o).model_dump(exclude={"role"}), role=roles.get(o.id))
            for o in page.items
        ]
    return paginated(request, "organizations", items, page)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=OrganizationDetail)
def create_organization(
    body: OrganizationCreate, principal: CurrentPrincipal, context: Context, response: Response
) -> OrganizationDetail:
    """Create an organization; the caller becomes its owner."""
    with context.db.transaction() as session:
        created = orgs.create_organization(
            session, principal, name=body.name, slug=body.slug, subscription_tier=body.subscription_tier
        )
        organization_id = created.id
    with context.db.session() as session:
        result = _detail(orgs.get_organization(session, principal, organization_id), principal)
    response.headers["Location"] = f"/api/v1/organizations/{organization_id}"
    return result


@router.get("/{organization_id}", response_model=OrganizationDetail)
def get_organization(organization_id: str, principal: CurrentPrincipal, context: Context) -> OrganizationDetail:
    with context.db.session() as session:
        return _detail(orgs.get_organization(session, principal, organization_id), principal)


@router.put("/{organization_id}", response_model=OrganizationDetail)
def update_organization(
    organization_id: str, body: OrganizationUpdate, principal: CurrentPrincipal, context: Context
) -> OrganizationDetail:
    with context.db.transaction() as session:
        orgs.update_organization(session, principal, organization_id, body.model_dump(exclude_unset=True))
    with context.db.session() as session:
        return _detail(orgs.get_organization(session, principal, organization_id), principal)


@router.delete("/{organization_id}", response_model=MessageResponse)
def delete_organization(organization_id: str, principal: CurrentPrincipal, context: Context) -> MessageResponse:
    with context.db.transaction() as session:
        orgs.delete_organization(session, principal, organization_id)
    return MessageResponse(message="Organization deleted successfully")


@router.post("/{organization_id}/members", status_code=status.HTTP_201_CREATED, response_model=MemberOut)
def add_member(
    organization_id: str, body: MemberAdd, principal: CurrentPrincipal, context: Context, response: Response
) -> MemberOut:
    with context.db.transaction() as session:
        member = orgs.add_member(
            session,
            principal,
            organization_id,
            user_id=body.user_id,
            email=body.email and str(body.email),
            role=orgs.OrgRole(body.role),
        )
        result = _member_out(member)
    response.headers["Location"] = f"/api/v1/organizations/{organization_id}/members/{result.user_id}"
    return result


@router.put("/{organization_id}/members/{user_id}", response_model=MemberOut)
def update_member(
    organization_id: str, user_id: str, body: MemberUpdate, principal: CurrentPrincipal, context: Context
) -> MemberOut:
    with context.db.transaction() as session:
        member = orgs.update_member_role(session, principal, organization_id, user_id, orgs.OrgRole(body.role))
        return _member_out(member)


@router.delete("/{organization_id}/members/{user_id}", response_model=MessageResponse)
def remove_member(organization_id: str, user_id: str, principal: CurrentPrincipal, context: Context) -> MessageResponse:
    """Remove a member (owners/admins), or leave (yourself). The last owner cannot leave."""
    with context.db.transaction() as session:
        orgs.remove_member(session, principal, organization_id, user_id)
    return MessageResponse(message="Member removed")
