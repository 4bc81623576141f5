"""ORM models. Every table is created and changed only by an Alembic migration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from persistence.base import Base, IdMixin, JSONType, TimestampMixin


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    # Stored lower-cased so that uniqueness is case-insensitive on every backend.
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    # Platform role: admin > agent > user (API.md "auth").
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="user")
    subscription_tier: Mapped[str] = mapped_column(String(16), nullable=False, default="free")
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    last_login_at: Mapped[datetime | None] = mapped_column()
