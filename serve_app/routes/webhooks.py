"""Webhooks (docs/api.md "Webhooks", docs/webhooks.md): CRUD, the delivery log, a test delivery, redelivery.

Every route is for the webhook's tenant, with the role user. Deliveries themselves are sent
by the EventHub's loop (`services.webhooks.deliver_due`); `POST /webhooks/{id}/test` sends one right away.
"""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Query, Request, Response, status

from core.crypto import SecretBox
from persistence.models import Webhook
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import PageParams, page_params, paginated, refuse_nulls
from serve_app.routing import protected_router
from serve_app.schemas.common import MessageResponse
from serve_app.schemas.webhooks import DeliveryList, DeliveryOut, WebhookCreate, WebhookList, WebhookOut, WebhookUpdate
from services import webhooks

# docs/api.md "Webhooks": role `user` for every webhook route (a user wires their own events to their own systems).
router = protected_router(prefix="/webhooks", tags=["webhooks"], resource="webhooks")


@router.get("", response_model=WebhookList)
def list_webhooks(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    is_active: Annotated[bool | None, Query(description="only active (true) or inactive (false) ones")] = None,
) -> dict:
    """Your webhooks and your organizations', newest first."""
    with context.db.session() as session:
        page = webhooks.list_webhooks(session, principal, page=params.page, limit=params.limit, is_active=is_active)
        box = SecretBox.from_settings(context.settings)
        items = [WebhookOut.of(item, box) for item in page.items]
    return paginated(request, "webhooks", items, page)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookOut)
def create_webhook(
    body: WebhookCreate, principal: CurrentPrincipal, context: Context, response: Response
) -> WebhookOut:
    """Without `secret`, one is generated and returned here in full, once; later reads show it masked."""
    box = SecretBox.from_settings(context.settings)
    hosts = context.settings.webhooks.webhook_allowed_hosts
    with context.db.transaction() as session:
        webhook, generated = webhooks.create_webhook(
            session, principal, box, body.model_dump(exclude_none=True), allowed_hosts=hosts
        )
        result = WebhookOut.of(webhook, box, secret=generated)
    response.headers["Location"] = f"/api/v1/webhooks/{result.id}"
    return result


@router.get("/{webhook_id}", response_model=WebhookOut)
def get_webhook(webhook_id: str, principal: CurrentPrincipal, context: Context) -> WebhookOut:
    with context.db.session() as session:
        return WebhookOut.of(
            webhooks.get_webhook(session, principal, webhook_id), SecretBox.from_settings(context.settings)
        )


def _update(webhook_id: str, body: WebhookUpdate, principal: CurrentPrincipal, context: Context) -> WebhookOut:
    changes = body.model_dump(exclude_unset=True)
    refuse_nulls({k: v for k, v in changes.items() if k != "secret"}, Webhook.__table__)
    box = SecretBox.from_settings(context.settings)
    hosts = context.settings.webhooks.webhook_allowed_hosts
    with context.db.transaction() as session:
        webhook = webhooks.update_webhook(session, principal, box, webhook_id, changes, allowed_hosts=hosts)
        return WebhookOut.of(webhook, box)


@router.put("/{webhook_id}", response_model=WebhookOut)
def replace_webhook(webhook_id: str, body: WebhookUpdate, principal: CurrentPrincipal, context: Context) -> WebhookOut:
    """Update the fields given; a new `secret` replaces the old one at once."""
    return _update(webhook_id, body, principal, context)


@router.patch("/{webhook_id}", response_model=WebhookOut)
def patch_webhook(webhook_id: str, body: WebhookUpdate, principal: CurrentPrincipal, context: Context) -> WebhookOut:
    return _update(webhook_id, body, principal, context)


@router.delete("/{webhook_id}", response_model=MessageResponse)
def delete_webhook(webhook_id: str, principal: CurrentPrincipal, context: Context) -> MessageResponse:
    """Delete the webhook and its delivery log; deliveries not yet sent are dropped."""
    with context.db.transaction() as session:
        webhooks.delete_webhook(session, principal, webhook_id)
    return MessageResponse(message="Webhook deleted successfully")


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList)
def list_deliveries(
    webhook_id: str,
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    status_filter: Annotated[
        str | None, Query(alias="status", max_length=16, description="pending, delivered, failed or dead")
    ] = None,
) -> dict:
    """The webhook's deliveries, newest first: status, attempts, last status code and error, timings, body."""
    with context.db.session() as session:
        page = webhooks.list_deliveries(
            session, principal, webhook_id, page=params.page, limit=params.limit, status=status_filter
        )
        items = [DeliveryOut.of(item) for item in page.items]
    return paginated(request, "deliveries", items, page)


@router.post("/{webhook_id}/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
def retry_delivery(webhook_id: str, delivery_id: str, principal: CurrentPrincipal, context: Context) -> DeliveryOut:
    """Redeliver a failed or dead delivery (same body, same event id) with a fresh count of attempts;
    the delivery loop sends it shortly. 409 for a pending or delivered one."""
    with context.db.transaction() as session:
        return DeliveryOut.of(webhooks.retry_delivery(session, principal, webhook_id, delivery_id))


@router.post("/{webhook_id}/test", response_model=DeliveryOut)
async def test_webhook(webhook_id: str, principal: CurrentPrincipal, context: Context) -> DeliveryOut:
    """Send a signed `webhook.test` event to the webhook now (whatever its `events`, even if inactive) and
    answer with the recorded delivery: `delivered`, or `dead` with the status code or error (not retried)."""
    async with httpx.AsyncClient() as client:
        delivery = await webhooks.send_test(context.db, context.settings, client, principal, webhook_id)
    return DeliveryOut.of(delivery)
