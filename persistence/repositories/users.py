"""Users table queries."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from persistence.models import User
from persistence.repositories.pages import Page, fetch_page
from persistence.repositories.search import matches_text


def get_user(session: Session, user_id: str) -> User | None:
    return session.get(User, user_id)


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.lower()))


def count_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def list_users(session: Session, *, page: int, limit: int, search: str | None = None) -> Page[User]:
    query = select(User).order_by(User.created_at.desc(), User.id.desc())
    if search:
        query = query.where(matches_text(search, User.email, User.first_name, User.last_name))
    return fetch_page(session, query, page=page, limit=limit)
