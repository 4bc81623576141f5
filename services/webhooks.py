"""Webhooks (docs/webhooks.md): endpoints that receive the events their owner may see, signed, retried, recorded.

Owned like every resource. The relay of the event outbox calls `enqueue_deliveries` in its transaction,
which writes one `pending` delivery per (event, matching webhook) with the exact body to send; a sender
loop calls `deliver_due` (claims due deliveries under a lease, POSTs them, records the outcome) and sleeps
`next_due_in`. A failed delivery is retried with exponential backoff and is `dead` after the last attempt.

Bodies are serialised the way JavaScript's `JSON.stringify` would re-serialise them once parsed, so that a
JavaScript receiver signing `JSON.stringify(req.body)` computes the same bytes as the raw body (docs/webhooks.md
"Verifying the signature").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import random
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.clock import isoformat_z, utcnow
from core.context import correlation_id_var
from core.crypto import DecryptionFailed, SecretBox
from core.errors import FieldIssue, InvalidTransition, NotFound, ValidationFailed, refuse_read_only
from core.ids import new_id
from core.settings import Settings
from persistence.db import Database
from persistence.models import Event, Organization, OrganizationMember, Webhook, WebhookDelivery
from persistence.repositories.pages import Page, fetch_page
from runtime.nodes import CheckedUrl, NodeFailed, check_url
from schedulers.webhook_delivery_lifecycle import DUE, DeliveryStatus, can_transition, transition
from services import ownership
from services.events import event_matches, is_event_pattern
from services.principal import Principal

log = logging.getLogger("orchestrator.webhooks")

TEST_EVENT = "webhook.test"
# Headers the platform sets (or HTTP itself owns): a webhook's custom headers may not replace them.
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
_RESERVED_PREFIX = "x-orchestrator-"
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
USER_AGENT = "Orchestrator-Webhook/1.0"
EDITABLE = frozenset({"name", "description", "url", "events", "secret", "headers", "is_active"})
MIN_SECRET_LENGTH = 16
ERROR_MAX = 1000
# A claimed delivery's lease beyond its request's timeout; renewed while its sender lives (`deliver_due`).
LEASE_MARGIN_S = 5.0


# ---------------------------------------------------------------------------------------------------------
# Pure pieces: the body's bytes, the signature, the backoff, event matching


def js_json(value: Any) -> str:
    """`value` as JavaScript's `JSON.stringify(JSON.parse(...))` prints it: compact, non-ASCII kept, integral
    numbers without `.0`, JS number formatting (1e21, 1e-7), integer-like keys first in numeric order."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        # JS numbers are doubles: integers beyond 2**53 come back rounded.
        return str(value) if abs(value) <= 2**53 else _js_number(float(value))
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, str):
        return _js_string(value)
    if isinstance(value, dict):
        items = [(_js_key(key), item) for key, item in value.items()]
        return "{" + ",".join(f"{_js_string(key)}:{js_json(item)}" for key, item in _js_key_order(items)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(js_json(item) for item in value) + "]"
    return _js_string(str(value))


def _js_key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key) if key is None or isinstance(key, bool) else str(key)


def _js_key_order(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Object keys that are array indices (canonical numbers below 2**32 - 1) come first, ascending."""
    indices = [(key, item) for key, item in items if _is_array_index(key)]
    if not indices:
        return items
    others = [(key, item) for key, item in items if not _is_array_index(key)]
    return sorted(indices, key=lambda pair: int(pair[0])) + others


def _is_array_index(key: str) -> bool:
    return key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


def _js_string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    # JSON.stringify escapes lone surrogates (Python strings hold surrogates only when unpaired).
    return re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)


def _js_number(value: float) -> str:
    """ECMAScript Number::toString for a finite double; NaN and infinities are `null` in JSON."""
    if math.isnan(value) or math.isinf(value):
        return "null"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, as ECMAScript requires; only the layout differs.
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    significant = (whole + fraction).lstrip("0")
    leading_zeros = len(whole + fraction) - len(significant)
    digits = significant.rstrip("0")
    k = len(digits)
    n = len(whole) + int(exponent or 0) - leading_zeros  # value = 0.<digits> * 10**n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    power = f"e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + (digits if k == 1 else digits[0] + "." + digits[1:]) + power


def signature(secret: str, body: bytes) -> str:
    """`X-Orchestrator-Signature`: ``sha256=`` + hex HMAC-SHA256 of the raw body (docs/webhooks.md)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_s(attempts: int, base_s: float, max_s: float, rng: Callable[[], float] = random.random) -> float:
    """Delay after `attempts` failed attempts: min(max, base * 2**(attempts-1)), its second half random so
    that receivers coming back up are not hit by every sender at once."""
    delay = min(max_s, base_s * 2.0 ** min(max(attempts - 1, 0), 62))
    return delay / 2 + rng() * delay / 2


def mask_secret(hint: str) -> str:
    return "••••" + hint


def payload_body(
    event_id: str,
    event_type: str,
    created_at: datetime,
    data: Any,
    correlation_id: str | None,
    organization: dict[str, str] | None = None,
) -> str:
    """The payload `{"event", "timestamp", "data", "organization"}`, with the event id (receivers de-duplicate
    by it) and the correlation id (docs/webhooks.md "What a delivery looks like")."""
    body: dict[str, Any] = {
        "id": event_id,
        "event": event_type,
        "timestamp": isoformat_z(created_at),
        "data": data,
        "correlation_id": correlation_id,
    }
    if organization is not None:
        body["organization"] = organization
    return js_json(body)


# ---------------------------------------------------------------------------------------------------------
# Validation


def check_webhook_url(url: str, allowed_hosts: Sequence[str]) -> str | None:
    """Why `url` may not be called (not http(s), or private and not allow-listed: SSRF), or None."""
    return _checked_url(url, allowed_hosts)[1]


def _checked_url(url: str, allowed_hosts: Sequence[str]) -> tuple[CheckedUrl | None, str | None]:
    """The URL to request, pinned to the address it was checked at, or why it may not be called."""
    try:
        return check_url(url, tuple(allowed_hosts)), None
    except NodeFailed as exc:
        return None, str(exc).replace("ORCHESTRATOR_HTTP_ALLOWED_HOSTS", "ORCHESTRATOR_WEBHOOK_ALLOWED_HOSTS")
    except RuntimeError as exc:  # the name does not resolve
        return None, str(exc)


def _validate_url(url: str, allowed_hosts: Sequence[str]) -> str:
    reason = check_webhook_url(url, allowed_hosts)
    if reason is not None:
        raise ValidationFailed("Webhook URL refused", details=[FieldIssue("url", reason)])
    return url


def _validate_events(events: list[str]) -> list[str]:
    cleaned: list[str] = []
    issues = []
    for raw in events:
        name = raw.strip().lower()
        if is_event_pattern(name):
            if name not in cleaned:
                cleaned.append(name)
        else:
            issues.append(
                FieldIssue("events", f"'{raw}' is not an event name (e.g. task.completed), '*' or 'prefix.*'")
            )
    if not events:
        issues.append(FieldIssue("events", "name at least one event, or '*'"))
    if issues:
        raise ValidationFailed("Invalid events", details=issues)
    return cleaned


def _validate_headers(headers: dict[str, str]) -> dict[str, str]:
    issues = []
    for name, value in headers.items():
        lowered = name.lower()
        if not _HEADER_NAME.match(name):
            issues.append(FieldIssue(f"headers.{name}", "not a valid header name"))
        elif lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIX):
            issues.append(FieldIssue(f"headers.{name}", "set by the platform; cannot be overridden"))
        elif "\r" in value or "\n" in value or len(value) > 2000:
            issues.append(FieldIssue(f"headers.{name}", "values are one line of at most 2000 characters"))
    if issues:
        raise ValidationFailed("Invalid headers", details=issues)
    return dict(headers)


def _validate_secret(secret: str) -> str:
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValidationFailed(
            "Secret too short",
            details=[
                FieldIssue("secret", f"at least {MIN_SECRET_LENGTH} characters (or omit it to have one generated)")
            ],
        )
    return secret


def _set_secret(webhook: Webhook, box: SecretBox, secret: str) -> None:
    webhook.secret_encrypted = box.encrypt(secret)
    webhook.secret_hint = secret[-4:]


def custom_headers(webhook: Webhook | Row, box: SecretBox) -> dict[str, str]:
    """A webhook's custom request headers, stored encrypted (rows from before migration 0013 hold them in
    clear until `encrypt_stored_headers`)."""
    if webhook.headers_encrypted:
        return json.loads(box.decrypt(webhook.headers_encrypted))
    return dict(webhook.headers or {})


def _set_headers(webhook: Webhook, box: SecretBox, headers: dict[str, str]) -> None:
    webhook.headers_encrypted = box.encrypt(json.dumps(headers))
    webhook.headers = {}


def encrypt_stored_headers(session: Session, box: SecretBox) -> int:
    """Encrypt the custom headers that rows from before migration 0013 hold in clear; returns how many."""
    legacy = list(session.scalars(select(Webhook).where(Webhook.headers_encrypted.is_(None))))
    for webhook in legacy:
        _set_headers(webhook, box, dict(webhook.headers or {}))
    return len(legacy)


def _validated(fields: dict[str, Any], allowed_hosts: Sequence[str]) -> dict[str, Any]:
    """The given fields checked and normalised; one 422 naming every wrong field."""
    checks: dict[str, Callable[[Any], Any]] = {
        "url": lambda url: _validate_url(url, allowed_hosts),
        "events": _validate_events,
        "headers": lambda headers: _validate_headers(headers or {}),
        "secret": lambda secret: _validate_secret(secret) if secret else None,
    }
    result, issues = dict(fields), []
    for name, check in checks.items():
        if name in fields:
            try:
                result[name] = check(fields[name])
            except ValidationFailed as exc:
                issues.extend(exc.details)
    if issues:
        raise ValidationFailed("Invalid webhook", details=issues)
    return result


# ---------------------------------------------------------------------------------------------------------
# CRUD


def create_webhook(
    session: Session, principal: Principal, box: SecretBox, data: dict[str, Any], *, allowed_hosts: Sequence[str]
) -> tuple[Webhook, str | None]:
    """The new webhook, and its secret when the platform generated it (shown once)."""
    owner_type, owner_id = ownership.resolve_owner(
        session, principal, data.pop("owner_type", None), data.pop("owner_id", None)
    )
    data = _validated(data, allowed_hosts)
    given = data.pop("secret", None)
    secret = given or secrets.token_hex(32)
    webhook = Webhook(
        owner_type=owner_type,
        owner_id=owner_id,
        created_by=principal.user_id,
        name=data.get("name"),
        description=data.get("description"),
        url=data["url"],
        events=data["events"],
        is_active=data.get("is_active", True),
    )
    _set_secret(webhook, box, secret)
    _set_headers(webhook, box, data.get("headers") or {})
    session.add(webhook)
    session.flush()
    return webhook, None if given else secret


def list_webhooks(
    session: Session, principal: Principal, *, page: int, limit: int, is_active: bool | None = None
) -> Page[Webhook]:
    """The caller's and their organizations' webhooks, newest first (admins: all)."""
    query = select(Webhook).where(ownership.owned_by(Webhook, principal))
    if is_active is not None:
        query = query.where(Webhook.is_active.is_(is_active))
    return fetch_page(session, query.order_by(Webhook.created_at.desc(), Webhook.id.desc()), page=page, limit=limit)


def get_webhook(session: Session, principal: Principal, webhook_id: str) -> Webhook:
    return ownership.get_visible(session, Webhook, webhook_id, principal)


def update_webhook(
    session: Session,
    principal: Principal,
    box: SecretBox,
    webhook_id: str,
    changes: dict[str, Any],
    *,
    allowed_hosts: Sequence[str],
) -> Webhook:
    webhook = ownership.get_writable(session, Webhook, webhook_id, principal)
    refuse_read_only(changes, EDITABLE)
    changes = _validated(changes, allowed_hosts)
    secret = changes.pop("secret", None)
    if secret:
        _set_secret(webhook, box, secret)
    if "headers" in changes:
        _set_headers(webhook, box, changes.pop("headers"))
    for name, value in changes.items():
        setattr(webhook, name, value)
    session.flush()
    return webhook


def delete_webhook(session: Session, principal: Principal, webhook_id: str) -> None:
    """Deletes the webhook and its deliveries (FK cascade)."""
    session.delete(ownership.get_writable(session, Webhook, webhook_id, principal))


def list_deliveries(
    session: Session, principal: Principal, webhook_id: str, *, page: int, limit: int, status: str | None = None
) -> Page[WebhookDelivery]:
    webhook = get_webhook(session, principal, webhook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    if status:
        try:
            query = query.where(WebhookDelivery.status == DeliveryStatus(status.strip().lower()).value)
        except ValueError:
            raise ValidationFailed(
                "Invalid status filter",
                details=[FieldIssue("status", f"one of {', '.join(s.value for s in DeliveryStatus)}")],
            ) from None
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    return fetch_page(session, query, page=page, limit=limit)


def retry_delivery(session: Session, principal: Principal, webhook_id: str, delivery_id: str) -> WebhookDelivery:
    """Redeliver a failed or dead delivery now, with a fresh count of attempts (the same body and event id)."""
    webhook = ownership.get_writable(session, Webhook, webhook_id, principal)
    query = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == webhook.id)
    delivery = session.scalars(query.with_for_update()).first()
    if delivery is None:
        raise NotFound("Webhook delivery not found")
    if not can_transition(delivery.status, DeliveryStatus.pending):
        raise InvalidTransition(f"A {delivery.status} delivery cannot be redelivered (only failed or dead ones)")
    delivery.status = transition(delivery.status, DeliveryStatus.pending).value
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    session.flush()
    return delivery


# ---------------------------------------------------------------------------------------------------------
# Enqueuing (called by the outbox relay, in its transaction)


def enqueue_deliveries(session: Session, batch: Sequence[Event | Row]) -> int:
    """One pending delivery per (event, active webhook whose `events` match and whose owner may see the
    event); returns how many were added. Idempotent: an (event, webhook) pair already enqueued is skipped.

    Visibility follows `services.events.list_events`: a user's webhook receives that user's events and
    those of organizations the user belongs to; an organization's webhook receives that organization's.
    Events without an owner (platform events) go to no webhook.
    """
    owned = [event for event in batch if event.owner_type and event.owner_id]
    if not owned:
        return 0
    user_ids = {event.owner_id for event in owned if event.owner_type == ownership.USER}
    org_ids = {event.owner_id for event in owned if event.owner_type == ownership.ORGANIZATION}
    members: dict[str, set[str]] = {}
    org_names: dict[str, str] = {}
    if org_ids:
        rows = session.execute(
            select(OrganizationMember.user_id, OrganizationMember.organization_id).where(
                OrganizationMember.organization_id.in_(org_ids)
            )
        )
        for user_id, org_id in rows:
            members.setdefault(user_id, set()).add(org_id)
        names = select(Organization.id, Organization.name).where(Organization.id.in_(org_ids))
        org_names = {org_id: name for org_id, name in session.execute(names)}
    owners = or_(
        and_(Webhook.owner_type == ownership.USER, Webhook.owner_id.in_(user_ids | set(members))),
        and_(Webhook.owner_type == ownership.ORGANIZATION, Webhook.owner_id.in_(org_ids)),
    )
    columns = (Webhook.id, Webhook.owner_type, Webhook.owner_id, Webhook.events)
    webhooks = session.execute(select(*columns).where(Webhook.is_active.is_(True), owners)).all()
    if not webhooks:
        return 0
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for event in owned:
        body: str | None = None
        for webhook_id, owner_type, owner_id, patterns in webhooks:
            if not _may_see(owner_type, owner_id, event, members) or not event_matches(patterns, event.event_type):
                continue
            if body is None:
                organization = (
                    {"id": event.owner_id, "name": org_names.get(event.owner_id, "")}
                    if event.owner_type == ownership.ORGANIZATION
                    else None
                )
                body = payload_body(
                    event.id, event.event_type, event.created_at or now, event.data, event.correlation_id, organization
                )
            rows.append(_pending_row(webhook_id, event.id, event.event_type, body, now))
    return _insert_new(session, rows)


def _may_see(owner_type: str, owner_id: str, event: Event | Row, members: dict[str, set[str]]) -> bool:
    if owner_type == ownership.ORGANIZATION:
        return event.owner_type == ownership.ORGANIZATION and event.owner_id == owner_id
    if event.owner_type == ownership.USER:
        return event.owner_id == owner_id
    return event.owner_id in members.get(owner_id, ())


def _pending_row(webhook_id: str, event_id: str, event_type: str, body: str, now: datetime) -> dict[str, Any]:
    return {
        "id": new_id(),
        "webhook_id": webhook_id,
        "event_id": event_id,
        "event_type": event_type,
        "body": body,
        "status": DeliveryStatus.pending.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(WebhookDelivery.__table__)
        .on_conflict_do_nothing(index_elements=["webhook_id", "event_id"])
        .returning(WebhookDelivery.__table__.c.id)
    )
    return len(session.execute(statement, rows).all())


# ---------------------------------------------------------------------------------------------------------
# Sending


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    body: str
    attempt: int
    url: str
    secret_encrypted: str
    headers_encrypted: str | None
    headers: dict[str, str]  # in clear only in rows from before migration 0013


@dataclass(frozen=True, slots=True)
class _Outcome:
    claimed: _Claimed
    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: int


async def deliver_due(
    db: Database, settings: Settings, client: httpx.AsyncClient, *, limit: int = 100
) -> dict[str, int]:
    """Send up to `limit` due deliveries (at most `webhook_concurrency` at once) and record each outcome.

    Claiming pushes `next_attempt_at` forward as a lease in the claiming transaction (rows locked with
    `FOR UPDATE SKIP LOCKED` on Postgres; SQLite serialises writers), so that concurrent callers never
    send the same delivery at once. The lease is short (one request's timeout and `LEASE_MARGIN_S`) and
    renewed while this call still has deliveries to send or record (each is recorded once sent): if the
    sender dies (its event hub killed), what it had not recorded is due again within that time, not after
    the whole batch's worst case. Returns
    `{"delivered", "retried", "dead"}` counts.
    """
    config = settings.webhooks
    lease_s = config.webhook_timeout_s + LEASE_MARGIN_S
    claimed = await asyncio.to_thread(_claim, db, limit, lease_s)
    if not claimed:
        return {"delivered": 0, "retried": 0, "dead": 0}
    box = SecretBox.from_settings(settings)
    gate = asyncio.Semaphore(config.webhook_concurrency)
    held = {item.id: item.attempt for item in claimed}  # claimed and not yet recorded: their lease is renewed
    counts = {"delivered": 0, "retried": 0, "dead": 0}
    sent: list[_Outcome] = []  # sent, waiting for the recorder
    more = asyncio.Event()
    finished = False

    async def bounded(item: _Claimed) -> None:
        async with gate:
            sent.append(await _send(client, settings, box, item))
        more.set()

    async def record_as_sent() -> None:
        """Outcomes are recorded as they come, not with the whole batch: a sent delivery whose lease would
        otherwise lapse while the rest of the batch waits is never claimed again by another sender, and a
        sender that dies mid-batch leaves due again only what it had not recorded. One write at a time (the
        hub's few connections stay free for the relay), of whatever was sent since the last one."""
        while True:
            await more.wait()
            more.clear()
            batch = sent[:]
            del sent[:]
            if batch:
                recorded = await asyncio.to_thread(_record, db, settings, batch, config.webhook_max_attempts)
                for outcome in batch:
                    held.pop(outcome.claimed.id, None)
                for key, number in recorded.items():
                    counts[key] += number
            if finished and not sent:
                return

    async def renew() -> None:
        while held:
            await asyncio.sleep(lease_s / 3)
            try:
                await asyncio.to_thread(_renew, db, dict(held), lease_s)
            except Exception:  # the next renewal tries again; a lease that runs out only means a resend
                log.warning("renewing the lease of %d webhook deliveries failed", len(held), exc_info=True)

    renewing = asyncio.create_task(renew())
    recording = asyncio.create_task(record_as_sent())
    try:
        await asyncio.gather(*(bounded(item) for item in claimed))
        finished = True
        more.set()
        await recording
    finally:
        renewing.cancel()
        recording.cancel()
    return counts


def _renew(db: Database, held: dict[str, int], lease_s: float) -> None:
    """Push the lease of the deliveries this sender still holds (the attempt it claimed: not one another
    sender took over since)."""
    held = [
        and_(WebhookDelivery.id == delivery_id, WebhookDelivery.attempts == attempt)
        for delivery_id, attempt in held.items()
    ]
    if not held:
        return
    with db.transaction() as session:
        session.execute(
            update(WebhookDelivery)
            .where(or_(*held), WebhookDelivery.status.in_(DUE))
            .values(next_attempt_at=utcnow() + timedelta(seconds=lease_s))
            .execution_options(synchronize_session=False)
        )


def next_due_in(db: Database) -> float | None:
    """Seconds until the earliest delivery of an active webhook is due (0 if one is due now), None if none."""
    query = select(func.min(WebhookDelivery.next_attempt_at)).where(
        WebhookDelivery.status.in_(DUE), WebhookDelivery.webhook_id.in_(_active_webhook_ids())
    )
    with db.session() as session:
        earliest = session.scalar(query)
    if earliest is None:
        return None
    return max(0.0, (earliest - utcnow()).total_seconds())


async def send_test(
    db: Database, settings: Settings, client: httpx.AsyncClient, principal: Principal, webhook_id: str
) -> WebhookDelivery:
    """Send a `webhook.test` event to the webhook now, whatever its `events` and even if inactive, and
    record it as a delivery of a single attempt (not retried)."""
    claimed = await asyncio.to_thread(_enqueue_test, db, principal, webhook_id, settings)
    outcome = await _send(client, settings, SecretBox.from_settings(settings), claimed)
    await asyncio.to_thread(_record, db, settings, [outcome], 1)
    return await asyncio.to_thread(_load_delivery, db, claimed.id)


def _load_delivery(db: Database, delivery_id: str) -> WebhookDelivery:
    with db.session() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:  # its webhook was deleted meanwhile
        raise NotFound("Webhook delivery not found")
    return delivery


def _active_webhook_ids():
    return select(Webhook.id).where(Webhook.is_active.is_(True))


def _claim(db: Database, limit: int, lease_s: float) -> list[_Claimed]:
    now = utcnow()
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status.in_(DUE),
            WebhookDelivery.next_attempt_at <= now,
            WebhookDelivery.webhook_id.in_(_active_webhook_ids()),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        # Postgres: concurrent claimers take disjoint rows. SQLite renders no FOR UPDATE (writers are serialised).
        .with_for_update(skip_locked=True)
    )
    with db.transaction() as session:
        ids = list(session.scalars(due))
        if not ids:
            return []
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .values(
                attempts=WebhookDelivery.attempts + 1,
                next_attempt_at=now + timedelta(seconds=lease_s),
                last_attempt_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        rows = session.execute(
            select(
                WebhookDelivery.id,
                WebhookDelivery.webhook_id,
                WebhookDelivery.event_id,
                WebhookDelivery.event_type,
                WebhookDelivery.body,
                WebhookDelivery.attempts,
                Webhook.url,
                Webhook.secret_encrypted,
                Webhook.headers_encrypted,
                Webhook.headers,
            )
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id.in_(ids))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        ).all()
    return [_Claimed(*row) for row in rows]


def _enqueue_test(db: Database, principal: Principal, webhook_id: str, settings: Settings) -> _Claimed:
    now = utcnow()
    correlation_id = correlation_id_var.get()
    with db.transaction() as session:
        webhook = ownership.get_writable(session, Webhook, webhook_id, principal)
        event_id = new_id()
        data = {"webhook_id": webhook.id, "message": "This is a test delivery from Orchestrator"}
        body = payload_body(event_id, TEST_EVENT, now, data, None if correlation_id == "-" else correlation_id)
        row = _pending_row(webhook.id, event_id, TEST_EVENT, body, now)
        # Leased from the start: no sender loop picks it up while this request sends it.
        lease = timedelta(seconds=settings.webhooks.webhook_timeout_s + 30)
        row.update(attempts=1, last_attempt_at=now, next_attempt_at=now + lease)
        session.add(WebhookDelivery(**row))
        return _Claimed(
            row["id"],
            webhook.id,
            event_id,
            TEST_EVENT,
            body,
            1,
            webhook.url,
            webhook.secret_encrypted,
            webhook.headers_encrypted,
            dict(webhook.headers),
        )


async def _send(client: httpx.AsyncClient, settings: Settings, box: SecretBox, item: _Claimed) -> _Outcome:
    started = time.perf_counter()

    def outcome(delivered: bool, status_code: int | None, error: str | None) -> _Outcome:
        elapsed = round((time.perf_counter() - started) * 1000)
        return _Outcome(item, delivered, status_code, error[:ERROR_MAX] if error else None, elapsed)

    try:
        # Checked again at each delivery (the name may resolve elsewhere now, or the allow-list may have
        # shrunk), and sent to the address that was checked: a second lookup could answer another (DNS
        # rebinding).
        checked, refused = await asyncio.to_thread(_checked_url, item.url, settings.webhooks.webhook_allowed_hosts)
        if checked is None:
            return outcome(False, None, f"refused: {refused}")
        body = item.body.encode()
        headers = {
            "User-Agent": USER_AGENT,
            **custom_headers(item, box),
            **checked.headers,
            "Content-Type": "application/json",
            "X-Orchestrator-Signature": signature(box.decrypt(item.secret_encrypted), body),
            "X-Orchestrator-Event": item.event_type,
            "X-Orchestrator-Event-ID": item.event_id,
            "X-Orchestrator-Delivery": item.id,
            "X-Orchestrator-Attempt": str(item.attempt),
        }
        async with client.stream(
            "POST",
            checked.url,
            content=body,
            headers=headers,
            follow_redirects=False,
            extensions=checked.extensions,
            timeout=settings.webhooks.webhook_timeout_s,
        ) as response:
            if 200 <= response.status_code < 300:
                return outcome(True, response.status_code, None)
            snippet = await _read_some(response, 300)
            return outcome(False, response.status_code, f"HTTP {response.status_code}: {snippet}".rstrip(": "))
    except DecryptionFailed as exc:
        return outcome(False, None, f"secret: {exc}")
    except httpx.HTTPError as exc:
        return outcome(False, None, f"{type(exc).__name__}: {exc}".rstrip(": "))
    except Exception as exc:  # one bad delivery must not stop the others; recorded, and logged once
        log.exception("webhook delivery %s failed unexpectedly", item.id)
        return outcome(False, None, f"internal error: {type(exc).__name__}")


async def _read_some(response: httpx.Response, limit: int) -> str:
    """The start of a response body, for the delivery's error (a receiver's body is not read in full)."""
    chunks = bytearray()
    async for chunk in response.aiter_bytes():
        chunks += chunk
        if len(chunks) >= limit:
            break
    return chunks[:limit].decode(errors="replace").strip()


def _record(db: Database, settings: Settings, outcomes: Sequence[_Outcome], max_attempts: int) -> dict[str, int]:
    """Each outcome onto its delivery, unless another sender took it over since (its attempt count moved)."""
    config = settings.webhooks
    counts = {"delivered": 0, "retried": 0, "dead": 0}
    last: dict[str, tuple[str, int | None]] = {}
    now = utcnow()
    with db.transaction() as session:
        for outcome in outcomes:
            item = outcome.claimed
            values: dict[str, Any] = {
                "last_status_code": outcome.status_code,
                "last_error": outcome.error,
                "duration_ms": outcome.duration_ms,
            }
            if outcome.delivered:
                status, key = DeliveryStatus.delivered, "delivered"
                values.update(delivered_at=now, next_attempt_at=None)
            elif item.attempt >= max_attempts:
                status, key = DeliveryStatus.dead, "dead"
                values.update(next_attempt_at=None)
            else:
                status, key = DeliveryStatus.failed, "retried"
                delay = backoff_s(item.attempt, config.webhook_backoff_base_s, config.webhook_backoff_max_s)
                values.update(next_attempt_at=now + timedelta(seconds=delay))
            result = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == item.id,
                    WebhookDelivery.attempts == item.attempt,
                    WebhookDelivery.status.in_(DUE),
                )
                .values(status=status.value, **values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount:
                counts[key] += 1
                last[item.webhook_id] = (status.value, outcome.status_code)
        for webhook_id, (status_value, status_code) in last.items():
            session.execute(
                update(Webhook)
                .where(Webhook.id == webhook_id)
                # updated_at says when the configuration changed, not when it last delivered.
                .values(
                    last_delivery_at=now,
                    last_delivery_status=status_value,
                    last_status_code=status_code,
                    updated_at=Webhook.updated_at,
                )
                .execution_options(synchronize_session=False)
            )
    return counts
