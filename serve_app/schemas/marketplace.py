"""Marketplace requests and responses (docs/api.md "Agents").

Some clients call a listing an "integration": `integration_id` and `marketplace_agent_id` are the listing id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from serve_app.schemas.agents import AgentOut, Label, OwnerType, _labels, _lower
from serve_app.schemas.common import (
    PaginationInfo,
    PaginationLinks,
    RequestModel,
    ResponseModel,
    names_its_organization,
)
from services.marketplace import ListingView, UsageMetrics

API_PATH = "/api/v1/marketplace"


class Pricing(RequestModel):
    type: Literal["free", "one_time", "subscription"] = "free"
    amount: float = Field(0, ge=0, le=1_000_000, validate_default=True)
    currency: str = Field("USD", pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code")
    interval: Literal["monthly", "yearly"] | None = Field(None, validate_default=True)

    @field_validator("type", "interval", mode="before")
    @classmethod
    def _one_spelling(cls, value: object) -> object:
        # Any case, and "one-time" as people write it.
        lowered = _lower(value)
        return lowered.replace("-", "_") if isinstance(lowered, str) else lowered

    @field_validator("amount")
    @classmethod
    def _free_costs_nothing(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("type") == "free" and value:
            raise ValueError("must be 0 for free pricing")
        return value

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("interval")
    @classmethod
    def _interval_for_subscriptions(cls, value: str | None, info: ValidationInfo) -> str | None:
        subscription = info.data.get("type") == "subscription"
        if subscription and value is None:
            raise ValueError("monthly or yearly is required for a subscription")
        if value is not None and not subscription:
            raise ValueError("only subscriptions have an interval")
        return value


class PublishRequest(RequestModel):
    """Fields left out keep the listing's current values (on first publication: the agent's)."""

    marketplace_name: str | None = Field(None, min_length=1, max_length=100, description="default orchestrator")
    pricing: Pricing | None = None
    description: str | None = Field(None, max_length=5000)
    tags: list[Label] | None = Field(None, max_length=100)

    _labels = field_validator("tags")(_labels)


class InstallRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=names_its_organization)

    name: str | None = Field(None, min_length=1, max_length=100, description="default: the listed agent's name")
    owner_type: OwnerType | None = None
    owner_id: str | None = Field(None, max_length=64)

    _owner = field_validator("owner_type", mode="before")(_lower)


class PricingOut(ResponseModel):
    type: str
    amount: float
    currency: str
    interval: str | None = None


class UsageMetricsOut(ResponseModel):
    total_downloads: int
    active_users: int
    total_executions: int
    revenue: float

    @classmethod
    def of(cls, usage: UsageMetrics) -> UsageMetricsOut:
        return cls.model_validate(usage)


class PublishOut(ResponseModel):
    integration_id: str
    marketplace_name: str
    marketplace_agent_id: str
    status: str
    published_at: datetime | None
    marketplace_url: str


class UnpublishOut(ResponseModel):
    integration_id: str
    status: str
    unpublished_at: datetime | None


class MarketplaceStatusOut(ResponseModel):
    """GET /agents/{id}/marketplace: the agent's listing as its publisher sees it."""

    integration_id: str
    marketplace_name: str
    marketplace_agent_id: str
    status: str
    published_at: datetime | None
    unpublished_at: datetime | None
    marketplace_url: str
    pricing: PricingOut
    tags: list[str]
    usage_metrics: UsageMetricsOut

    @classmethod
    def of(cls, view: ListingView) -> MarketplaceStatusOut:
        listing = view.listing
        return cls(
            integration_id=listing.id,
            marketplace_name=listing.marketplace_name,
            marketplace_agent_id=listing.id,
            status=listing.status,
            published_at=listing.published_at,
            unpublished_at=listing.unpublished_at,
            marketplace_url=listing_url(listing.id),
            pricing=PricingOut.model_validate(listing.pricing),
            tags=listing.tags,
            usage_metrics=UsageMetricsOut.of(view.usage),
        )


class ListingOut(ResponseModel):
    """A catalog entry: the listing, a summary of the agent it installs, and its counted usage."""

    id: str
    marketplace_name: str
    name: str
    description: str | None
    pricing: PricingOut
    tags: list[str]
    status: str
    published_at: datetime | None
    marketplace_url: str
    agent_id: str
    framework: str
    agent_type: str
    type: str | None
    capabilities: list[str]
    version: str
    usage_metrics: UsageMetricsOut

    @classmethod
    def of(cls, view: ListingView) -> ListingOut:
        listing, agent = view.listing, view.agent
        return cls(
            id=listing.id,
            marketplace_name=listing.marketplace_name,
            name=listing.name,
            description=listing.description,
            pricing=PricingOut.model_validate(listing.pricing),
            tags=listing.tags,
            status=listing.status,
            published_at=listing.published_at,
            marketplace_url=listing_url(listing.id),
            agent_id=agent.id,
            framework=agent.framework,
            agent_type=agent.agent_type,
            type=agent.type,
            capabilities=agent.capabilities,
            version=agent.version,
            usage_metrics=UsageMetricsOut.of(view.usage),
        )


class ListingList(ResponseModel):
    listings: list[ListingOut]
    pagination: PaginationInfo
    links: PaginationLinks


class InstallOut(ResponseModel):
    install_id: str
    listing_id: str
    agent: AgentOut


def listing_url(listing_id: str) -> str:
    return f"{API_PATH}/{listing_id}"
