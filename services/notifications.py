"""Notifications: what a user should know about, written in the transaction of the change that
caused it: a mention in a comment, their task assigned to an agent, their approval request decided.

Only user accounts receive them; machine identities (service tokens, OAuth clients, environment keys)
have no inbox, so a change made for one of them notifies nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.clock import isoformat_z, utcnow
from core.errors import NotFound
from core.ids import new_id
from persistence.models import Notification, User
from persistence.repositories.pages import Page, fetch_page
from services import events


def notify(
    session: Session, user_id: str | None, kind: str, title: str, *, message: str | None = None, **data: Any
) -> Notification | None:
    """Add a notification for `user_id` if it names a user account (else nothing)."""
    if not user_id or session.get(User, user_id) is None:
        return None
    notification = Notification(
        id=new_id(), user_id=user_id, type=kind, title=title[:300], message=message, data=data, created_at=utcnow()
    )
    session.add(notification)
    # Pushed to the recipient's WebSocket connections (channel `notifications`): the event is theirs alone.
    events.emit(
        session,
        "notification.created",
        notification_summary(notification),
        source="notifications",
        owner=_Recipient(user_id),
        subject_id=notification.id,
    )
    return notification


@dataclass(frozen=True)
class _Recipient:
    owner_id: str
    owner_type: str = "user"


def notification_summary(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "type": notification.type,
        "title": notification.title,
        "message": notification.message,
        "data": notification.data,
        "created_at": isoformat_z(notification.created_at),
    }


def list_notifications(session: Session, user_id: str, *, page: int, limit: int, unread_only: bool) -> Page:
    query = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return fetch_page(
        session, query.order_by(Notification.created_at.desc(), Notification.id.desc()), page=page, limit=limit
    )


def unread_count(session: Session, user_id: str) -> int:
    query = select(func.count()).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    return session.scalar(query) or 0


def mark_read(session: Session, user_id: str, notification_id: str) -> Notification:
    """Mark one of the caller's notifications read (idempotent); another user's answers 404."""
    notification = session.get(Notification, notification_id)
    if notification is None or notification.user_id != user_id:
        raise NotFound("Notification not found")
    if notification.read_at is None:
        notification.read_at = utcnow()
    session.flush()
    return notification


def mark_all_read(session: Session, user_id: str) -> int:
    result = session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    return result.rowcount or 0
