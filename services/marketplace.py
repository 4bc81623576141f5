"""The built-in agent marketplace (docs/api.md "Agents"): publishing an agent as a listing,
browsing everyone's published listings, and installing a listing as a copy in the caller's account.

Usage metrics are counted from install rows and execution counters, never stored, so they cannot drift.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import NotFound
from persistence.models import Agent, MarketplaceInstall, MarketplaceListing
from persistence.repositories.json_arrays import array_contains
from persistence.repositories.pages import Page, fetch_page
from persistence.repositories.search import matches_text
from services import agents, events, ownership
from services.principal import Principal

PUBLISHED, UNPUBLISHED = "published", "unpublished"
DEFAULT_MARKETPLACE = "orchestrator"
FREE_PRICING: dict[str, Any] = {"type": "free", "amount": 0, "currency": "USD", "interval": None}
SORT_KEYS = ("published_at", "downloads", "name")

# What an install copies from the listed agent. Not copied: ownership, status and counters (the copy is a
# new draft of the installer's), `is_public` (only admins make agents public), `configuration_id` (the
# publisher's saved configuration is not the installer's) and `working_hours` (the publisher's schedule).
# The configuration is copied without the publisher's credentials (`without_secrets`).
COPIED_FIELDS = (
    "description",
    "framework",
    "agent_type",
    "mode",
    "type",
    "capabilities",
    "specializations",
    "tags",
    "model",
    "provider",
    "configuration",
    "max_concurrent_tasks",
    "resource_limits",
    "version",
)


# Configuration keys that hold the publisher's credentials: never copied into an installer's agent.
_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password|passwd|credential|private[_-]?key|auth)", re.I)


def without_secrets(configuration: dict[str, Any]) -> dict[str, Any]:
    """The configuration with every credential-like key removed, at any depth."""
    cleaned: dict[str, Any] = {}
    for key, value in configuration.items():
        if _SECRET_KEY.search(str(key)):
            continue
        cleaned[key] = without_secrets(value) if isinstance(value, dict) else value
    return cleaned


@dataclass(frozen=True, slots=True)
class UsageMetrics:
    total_downloads: int = 0
    active_users: int = 0
    total_executions: int = 0
    revenue: float = 0.0


@dataclass(frozen=True, slots=True)
class ListingView:
    """A listing with the agent it lists and its counted usage: what every read of a listing shows."""

    listing: MarketplaceListing
    agent: Agent
    usage: UsageMetrics


@dataclass(frozen=True, slots=True)
class Published:
    listing: MarketplaceListing
    created: bool


@dataclass(frozen=True, slots=True)
class Installed:
    install: MarketplaceInstall
    agent: Agent


def publish(session: Session, principal: Principal, agent_id: str, changes: dict[str, Any]) -> Published:
    """Publish the agent, or re-publish its one listing. `changes` (marketplace_name, pricing, description,
    tags) replace what the listing had; on first publication the rest comes from the agent."""
    agent = ownership.get_writable(session, Agent, agent_id, principal)
    # Two first publications of one agent would both find no listing. Locking the agent row (FOR UPDATE on
    # Postgres; SQLite writers are serialised already) makes the second wait and re-publish instead of
    # failing on the unique agent_id.
    agents.lock_agent(session, agent.id)
    listing = _listing_of(session, agent.id)
    created = listing is None
    if listing is None:
        listing = MarketplaceListing(
            agent_id=agent.id,
            marketplace_name=DEFAULT_MARKETPLACE,
            description=agent.description,
            pricing=dict(FREE_PRICING),
            tags=list(agent.tags or []),
        )
        session.add(listing)
    for field, value in changes.items():
        if value is not None:
            setattr(listing, field, value)
    listing.name = agent.name
    listing.owner_type, listing.owner_id = agent.owner_type, agent.owner_id
    if listing.status != PUBLISHED:
        listing.published_at, listing.unpublished_at = utcnow(), None
    listing.status = PUBLISHED
    # Public while published: the ownership rules then show it to everyone, and only to its owners after.
    listing.is_public = True
    session.flush()
    _emit_update(session, listing)
    return Published(listing=listing, created=created)


def unpublish(session: Session, principal: Principal, agent_id: str) -> MarketplaceListing:
    """Withdraw the agent's listing from browsing and installing. Unpublishing twice changes nothing."""
    agent = ownership.get_writable(session, Agent, agent_id, principal)
    listing = _listing_of(session, agent.id, lock=True)
    if listing is None:
        raise NotFound("This agent has never been published to the marketplace")
    if listing.status != UNPUBLISHED:
        listing.status, listing.unpublished_at, listing.is_public = UNPUBLISHED, utcnow(), False
        session.flush()
        _emit_update(session, listing)
    return listing


def agent_listing(session: Session, principal: Principal, agent_id: str) -> ListingView:
    """The marketplace status of an agent the caller can see, published or not."""
    agent = ownership.get_visible(session, Agent, agent_id, principal)
    listing = _listing_of(session, agent.id)
    if listing is None:
        raise NotFound("This agent has never been published to the marketplace")
    return ListingView(listing=listing, agent=agent, usage=usage_metrics(session, [listing])[listing.id])


def get_listing(session: Session, principal: Principal, listing_id: str) -> ListingView:
    """A published listing; an unpublished one only for its owners."""
    listing = ownership.get_visible(session, MarketplaceListing, listing_id, principal)
    agent = session.get(Agent, listing.agent_id)
    assert agent is not None  # the listing is deleted with its agent
    return ListingView(listing=listing, agent=agent, usage=usage_metrics(session, [listing])[listing.id])


def list_listings(
    session: Session,
    *,
    page: int,
    limit: int,
    search: str | None = None,
    tags: list[str] | None = None,
    framework: str | None = None,
    sort_by: str = "published_at",
    sort_order: str | None = None,
) -> Page[ListingView]:
    """Everyone's published listings: the catalog is public to every authenticated caller."""
    dialect = session.get_bind().dialect.name
    query = (
        select(MarketplaceListing)
        .join(Agent, Agent.id == MarketplaceListing.agent_id)
        .where(MarketplaceListing.status == PUBLISHED)
    )
    if search:
        query = query.where(matches_text(search, MarketplaceListing.name, MarketplaceListing.description))
    for tag in tags or []:
        query = query.where(array_contains(MarketplaceListing.tags, tag, dialect))
    if framework:
        query = query.where(Agent.framework == framework)
    # Names read A to Z, the rest biggest or newest first, unless the caller says otherwise.
    descending = (sort_order or ("asc" if sort_by == "name" else "desc")) == "desc"
    if sort_by == "downloads":
        downloads = (
            select(MarketplaceInstall.listing_id, func.count().label("downloads"))
            .group_by(MarketplaceInstall.listing_id)
            .subquery()
        )
        query = query.outerjoin(downloads, downloads.c.listing_id == MarketplaceListing.id)
        key: Any = func.coalesce(downloads.c.downloads, 0)
    elif sort_by == "name":
        key = func.lower(MarketplaceListing.name)
    else:
        key = MarketplaceListing.published_at
    tiebreak = MarketplaceListing.id
    query = query.order_by(*((key.desc(), tiebreak.desc()) if descending else (key.asc(), tiebreak.asc())))
    found = fetch_page(session, query, page=page, limit=limit)
    listed = {
        agent.id: agent
        for agent in session.scalars(select(Agent).where(Agent.id.in_([listing.agent_id for listing in found.items])))
    }
    usage = usage_metrics(session, found.items)
    views = [ListingView(listing, listed[listing.agent_id], usage[listing.id]) for listing in found.items]
    return Page(items=views, total=found.total, page=found.page, limit=found.limit)


def install(
    session: Session,
    principal: Principal,
    listing_id: str,
    *,
    name: str | None = None,
    owner_type: str | None = None,
    owner_id: str | None = None,
) -> Installed:
    """Copy a published listing's agent into the caller's account (or one of their organizations) as a
    new draft, and record the install."""
    # A shared lock (FOR SHARE on Postgres): concurrent installs proceed together, while an unpublish or
    # a deletion of the listed agent waits until this install has committed.
    listing = session.get(MarketplaceListing, listing_id, with_for_update={"read": True})
    if listing is None or listing.status != PUBLISHED:
        raise NotFound("Marketplace listing not found")
    source = session.get(Agent, listing.agent_id)
    assert source is not None  # the listing is deleted with its agent
    # Deep copies: the copy's JSON values must not be the very objects the listed agent holds.
    data = {field: copy.deepcopy(getattr(source, field)) for field in COPIED_FIELDS}
    data["configuration"] = without_secrets(data["configuration"] or {})
    data.update(name=name or source.name, owner_type=owner_type, owner_id=owner_id)
    agent = agents.create_agent(session, principal, data)
    record = MarketplaceInstall(
        listing_id=listing.id,
        agent_id=agent.id,
        installed_by=principal.user_id,
        owner_type=agent.owner_type,
        owner_id=agent.owner_id,
    )
    session.add(record)
    session.flush()
    _emit_update(session, listing)
    return Installed(install=record, agent=agent)


def usage_metrics(session: Session, listings: Sequence[MarketplaceListing]) -> dict[str, UsageMetrics]:
    """Counted usage per listing id, in two queries whatever the number of listings.

    Downloads are install rows; active users the distinct installers whose copy still exists; executions
    those of the surviving copies plus the listed agent's own; revenue follows the pricing type.
    """
    if not listings:
        return {}
    ids = [listing.id for listing in listings]
    copies = (
        select(
            MarketplaceInstall.listing_id,
            func.count(MarketplaceInstall.id),
            func.count(
                func.distinct(case((MarketplaceInstall.agent_id.is_not(None), MarketplaceInstall.installed_by)))
            ),
            func.coalesce(func.sum(Agent.total_executions), 0),
        )
        .outerjoin(Agent, Agent.id == MarketplaceInstall.agent_id)
        .where(MarketplaceInstall.listing_id.in_(ids))
        .group_by(MarketplaceInstall.listing_id)
    )
    installs = {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in session.execute(copies)}
    listed = (
        select(MarketplaceListing.id, Agent.total_executions)
        .join(Agent, Agent.id == MarketplaceListing.agent_id)
        .where(MarketplaceListing.id.in_(ids))
    )
    own = {listing_id: int(runs or 0) for listing_id, runs in session.execute(listed)}
    result = {}
    for listing in listings:
        downloads, active, copy_executions = installs.get(listing.id, (0, 0, 0))
        result[listing.id] = UsageMetrics(
            total_downloads=downloads,
            active_users=active,
            total_executions=copy_executions + own.get(listing.id, 0),
            revenue=_revenue(listing.pricing or {}, downloads, active),
        )
    return result


def _revenue(pricing: dict[str, Any], downloads: int, active_users: int) -> float:
    # A one-time price is paid per download; a subscription by each user who still has the agent.
    amount = float(pricing.get("amount") or 0)
    payers = {"one_time": downloads, "subscription": active_users}.get(pricing.get("type", "free"), 0)
    return round(amount * payers, 2)


def _listing_of(session: Session, agent_id: str, *, lock: bool = False) -> MarketplaceListing | None:
    query = select(MarketplaceListing).where(MarketplaceListing.agent_id == agent_id)
    return session.scalar(query.with_for_update() if lock else query)


def _emit_update(session: Session, listing: MarketplaceListing) -> None:
    usage = usage_metrics(session, [listing])[listing.id]
    events.emit(
        session,
        "marketplace.updated",
        {
            "agent_id": listing.agent_id,
            "integration_id": listing.id,
            "status": listing.status,
            "usage_metrics": asdict(usage),
        },
        source="marketplace",
        owner=listing,
        subject_id=listing.agent_id,
    )
