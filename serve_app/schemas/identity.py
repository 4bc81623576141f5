"""Tokens, API keys, OAuth clients and organizations (docs/api.md "Identity and access")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AliasChoices, ConfigDict, EmailStr, Field, field_validator

from serve_app.schemas.common import NOT_BLANK, PaginationInfo, PaginationLinks, RequestModel, ResponseModel
from services.organizations import SLUG_PATTERN
from services.scopes import SCOPE_PATTERN

RoleName = Literal["admin", "agent", "user"]
OrgRoleName = Literal["owner", "admin", "member"]
Tier = Literal["free", "pro", "enterprise"]


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


# A scope of an API key or OAuth client: checked by services.scopes.normalize_scopes (422 naming the field).
Scope = Annotated[str, Field(json_schema_extra={"pattern": SCOPE_PATTERN})]
# An organization's slug: checked by the organizations service (422 naming `slug`), whose pattern also bounds its
# length (100) once stripped; a maxLength would count the spaces around it.
Slug = Annotated[str, Field(json_schema_extra={"pattern": SLUG_PATTERN})]


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class LogoutRequest(RequestModel):
    refresh_token: str | None = Field(None, max_length=4096)


class RefreshResponse(ResponseModel):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (an OAuth token type, not a password)


class ServiceTokenRequest(RequestModel):
    user_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@\-]+$")
    role: RoleName
    expires_in: int | None = Field(None, ge=60, description="seconds; default: the access token lifetime")

    _role = field_validator("role", mode="before")(_lower)


class AccessTokenResponse(ResponseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (an OAuth token type, not a password)
    expires_in: int
    scope: str | None = None


class ApiKeyCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    permissions: list[Scope] | None = Field(
        None, validation_alias=AliasChoices("permissions", "scopes"), description="scopes like tasks:read; default *"
    )
    expires_at: datetime | None = None
    expires_in_days: int | None = Field(None, ge=1, le=3650)

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # A time without a zone is read as UTC (docs/api.md "Conventions": times are UTC), never compared naive.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class ApiKeyOut(ResponseModel):
    id: str
    name: str
    prefix: str
    permissions: list[str] = Field(validation_alias=AliasChoices("permissions", "scopes"))
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Shown once: store it now")


class ApiKeyList(ResponseModel):
    api_keys: list[ApiKeyOut]
    pagination: PaginationInfo
    links: PaginationLinks


class OAuthClientCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    role: RoleName = "agent"
    scopes: list[Scope] = Field(default_factory=lambda: ["*"])

    _role = field_validator("role", mode="before")(_lower)


class OAuthClientOut(ResponseModel):
    id: str
    client_id: str
    name: str
    role: str
    scopes: list[str]
    revoked_at: datetime | None
    created_at: datetime


class OAuthClientCreated(OAuthClientOut):
    client_secret: str = Field(description="Shown once: store it now")


class OAuthClientList(ResponseModel):
    clients: list[OAuthClientOut]
    pagination: PaginationInfo
    links: PaginationLinks


class OrganizationCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    slug: Slug | None = None
    subscription_tier: Tier | None = None

    _tier = field_validator("subscription_tier", mode="before")(_lower)


class OrganizationUpdate(RequestModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    slug: Slug | None = None
    subscription_tier: Tier | None = None

    _tier = field_validator("subscription_tier", mode="before")(_lower)


class MemberOut(ResponseModel):
    id: str
    user_id: str
    email: str
    role: str
    joined_at: datetime


class OrganizationOut(ResponseModel):
    id: str
    name: str
    slug: str
    subscription_tier: str
    role: str | None = None
    created_at: datetime
    updated_at: datetime


class OrganizationDetail(OrganizationOut):
    members: list[MemberOut]


class OrganizationList(ResponseModel):
    organizations: list[OrganizationOut]
    pagination: PaginationInfo
    links: PaginationLinks


class MemberAdd(RequestModel):
    # One of the two names the user (the organizations service answers 422 naming `user_id` otherwise).
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["userId"], "properties": {"userId": {"type": "string", "pattern": NOT_BLANK}}},
                {"required": ["email"], "properties": {"email": {"type": "string"}}},
            ]
        }
    )

    user_id: str | None = None
    email: EmailStr | None = None
    role: OrgRoleName = "member"

    _role = field_validator("role", mode="before")(_lower)


class MemberUpdate(RequestModel):
    role: OrgRoleName

    _role = field_validator("role", mode="before")(_lower)
