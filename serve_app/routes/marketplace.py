"""The built-in marketplace (docs/api.md "Agents"): publish/unpublish an agent, its listing
status, the catalog of everyone's published listings, and installing a listing as a copy.

Every route needs the `agent` role, reads included; API keys need the `marketplace:read|write` scope.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response, status

from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import PageParams, csv_param, page_params, paginated
from serve_app.routing import protected_router
from serve_app.schemas.agents import AgentOut
from serve_app.schemas.marketplace import (
    InstallOut,
    InstallRequest,
    ListingList,
    ListingOut,
    MarketplaceStatusOut,
    PublishOut,
    PublishRequest,
    UnpublishOut,
    listing_url,
)
from services import marketplace
from services.principal import Role

# docs/api.md "Agents": the marketplace routes need the `agent` role, reads included.
router = protected_router(tags=["marketplace"], resource="marketplace", min_role=Role.agent)


@router.post(
    "/agents/{agent_id}/publish",
    response_model=PublishOut,
    responses={201: {"model": PublishOut, "description": "First publication; `Location` names the listing"}},
)
def publish_agent(
    agent_id: str, principal: CurrentPrincipal, context: Context, response: Response, body: PublishRequest | None = None
) -> PublishOut:
    """Publish the agent to the marketplace. The first publication answers 201 with a `Location` of the new
    listing; publishing again (to change the listing, or after an unpublish) answers 200 with the same
    listing. Fields left out keep the listing's values; the first time, description and tags come from the
    agent and pricing is free."""
    request = body or PublishRequest()
    changes = request.model_dump(exclude_none=True)
    if request.pricing is not None:
        changes["pricing"] = request.pricing.model_dump()
    with context.db.transaction() as session:
        outcome = marketplace.publish(session, principal, agent_id, changes)
        listing = outcome.listing
        result = PublishOut(
            integration_id=listing.id,
            marketplace_name=listing.marketplace_name,
            marketplace_agent_id=listing.id,
            status=listing.status,
            published_at=listing.published_at,
            marketplace_url=listing_url(listing.id),
        )
    if outcome.created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = result.marketplace_url
    return result


@router.post("/agents/{agent_id}/unpublish", response_model=UnpublishOut)
def unpublish_agent(agent_id: str, principal: CurrentPrincipal, context: Context) -> UnpublishOut:
    """Hide the listing from the catalog and stop installs; installed copies stay. 404 if never published."""
    with context.db.transaction() as session:
        listing = marketplace.unpublish(session, principal, agent_id)
        return UnpublishOut(integration_id=listing.id, status=listing.status, unpublished_at=listing.unpublished_at)


@router.get("/agents/{agent_id}/marketplace", response_model=MarketplaceStatusOut)
def get_agent_marketplace_status(agent_id: str, principal: CurrentPrincipal, context: Context) -> MarketplaceStatusOut:
    """The agent's listing, published or not, with usage counted from installs and executions."""
    with context.db.session() as session:
        return MarketplaceStatusOut.of(marketplace.agent_listing(session, principal, agent_id))


@router.get("/marketplace", response_model=ListingList)
def browse_marketplace(
    request: Request,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    search: Annotated[str | None, Query(max_length=200, description="in name or description")] = None,
    tags: Annotated[str | None, Query(max_length=1000, description="comma-separated; all required")] = None,
    framework: Annotated[str | None, Query(max_length=32)] = None,
    sort_by: Annotated[str, Query(pattern="^(published_at|publishedAt|downloads|name)$")] = "published_at",
    sort_order: Annotated[
        str | None, Query(pattern="(?i)^(asc|desc)$", description="default: desc, asc for name")
    ] = None,
) -> dict:
    """Everyone's published listings (the catalog is open to every authenticated caller)."""
    with context.db.session() as session:
        page = marketplace.list_listings(
            session,
            page=params.page,
            limit=params.limit,
            search=search,
            tags=csv_param(tags),
            framework=framework.lower() if framework else None,
            sort_by=sort_by.lower(),
            sort_order=sort_order.lower() if sort_order else None,
        )
        items = [ListingOut.of(view) for view in page.items]
    return paginated(request, "listings", items, page)


@router.get("/marketplace/{listing_id}", response_model=ListingOut)
def get_listing(listing_id: str, principal: CurrentPrincipal, context: Context) -> ListingOut:
    """A published listing; an unpublished one only for the agent's owners (404 for everyone else)."""
    with context.db.session() as session:
        return ListingOut.of(marketplace.get_listing(session, principal, listing_id))


@router.post("/marketplace/{listing_id}/install", status_code=status.HTTP_201_CREATED, response_model=InstallOut)
def install_listing(
    listing_id: str,
    principal: CurrentPrincipal,
    context: Context,
    response: Response,
    body: InstallRequest | None = None,
) -> InstallOut:
    """Copy the listed agent into the caller's account (or an organization of theirs) as a new `draft`
    agent; `Location` names the new agent. Installing one's own listing is allowed."""
    request = body or InstallRequest()
    with context.db.transaction() as session:
        installed = marketplace.install(
            session,
            principal,
            listing_id,
            name=request.name,
            owner_type=request.owner_type,
            owner_id=request.owner_id,
        )
        result = InstallOut(
            install_id=installed.install.id, listing_id=listing_id, agent=AgentOut.model_validate(installed.agent)
        )
    response.headers["Location"] = f"/api/v1/agents/{result.agent.id}"
    return result
