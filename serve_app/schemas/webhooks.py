"""Webhooks and their deliveries (docs/api.md "Webhooks"). The signing secret is never returned, only masked."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, ConfigDict, Field, StrictBool, field_validator

from core.crypto import SecretBox
from persistence.models import Webhook, WebhookDelivery
from serve_app.schemas.common import (
    PaginationInfo,
    PaginationLinks,
    RequestModel,
    ResponseModel,
    names_its_organization,
    not_nullable,
)
from services.webhooks import custom_headers, mask_secret

_ACTIVE = AliasChoices("is_active", "isActive", "active")


class WebhookFields(RequestModel):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)
    secret: str | None = Field(None, max_length=256, description="HMAC key; omit it on create to have one generated")
    headers: dict[str, str] | None = Field(None, max_length=20, description="custom request headers")
    is_active: StrictBool | None = Field(None, validation_alias=_ACTIVE)


class WebhookCreate(WebhookFields):
    model_config = ConfigDict(json_schema_extra=names_its_organization)

    url: str = Field(min_length=1, max_length=2048, examples=["https://your-app.com/webhook/orchestrator"])
    events: list[str] = Field(max_length=100, examples=[["task.created", "task.completed", "agent.*"]])
    owner_type: Literal["user", "organization"] | None = None
    owner_id: str | None = Field(None, max_length=64)

    @field_validator("owner_type", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class WebhookUpdate(WebhookFields):
    model_config = ConfigDict(json_schema_extra=not_nullable("headers", "is_active", "url", "events"))

    url: str | None = Field(None, min_length=1, max_length=2048)
    events: list[str] | None = Field(None, max_length=100)


class WebhookOut(ResponseModel):
    id: str
    name: str | None
    description: str | None
    url: str
    events: list[str]
    headers: dict[str, str]
    is_active: bool
    # Masked ("••••" + its last 4 characters); the whole secret only in the create response, when generated.
    secret: str
    has_secret: bool = True
    owner_type: str
    owner_id: str
    created_by: str | None
    last_delivery_at: datetime | None
    last_delivery_status: str | None
    last_status_code: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, webhook: Webhook, box: SecretBox, *, secret: str | None = None) -> WebhookOut:
        computed = ("secret", "has_secret", "headers")
        fields = {name: getattr(webhook, name) for name in cls.model_fields if name not in computed}
        return cls(**fields, headers=custom_headers(webhook, box), secret=secret or mask_secret(webhook.secret_hint))


class WebhookList(ResponseModel):
    webhooks: list[WebhookOut]
    pagination: PaginationInfo
    links: PaginationLinks


class DeliveryOut(ResponseModel):
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: str = Field(description="pending | delivered | failed (will retry) | dead (no more attempts)")
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    duration_ms: int | None
    created_at: datetime
    delivered_at: datetime | None
    # The body sent, parsed (the bytes sent are this, as JSON.stringify prints it).
    payload: dict[str, Any]

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryOut:
        fields = {name: getattr(delivery, name) for name in cls.model_fields if name != "payload"}
        return cls(**fields, payload=json.loads(delivery.body))


class DeliveryList(ResponseModel):
    deliveries: list[DeliveryOut]
    pagination: PaginationInfo
    links: PaginationLinks
