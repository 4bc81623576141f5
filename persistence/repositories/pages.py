"""Offset pagination over any select, with the total counted by the database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")

# The largest OFFSET the databases take: a 64-bit integer (Postgres BIGINT, SQLite INTEGER).
MAX_OFFSET = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    limit: int


def fetch_page(session: Session, query: Select[tuple[T]], *, page: int, limit: int) -> Page[T]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    items = list(session.scalars(query.limit(limit).offset((page - 1) * limit)))
    return Page(items=items, total=total, page=page, limit=limit)
