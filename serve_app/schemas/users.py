"""Users, registration and login bodies (docs/api.md "Identity and access")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import EmailStr, Field, computed_field, model_validator

from serve_app.schemas.common import PaginationInfo, PaginationLinks, RequestModel, ResponseModel


def _split_name(data: Any) -> Any:
    """`name` as some clients send it ("Ada Lovelace"): the first word is the first name, the rest the last,
    unless the body gives those itself."""
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        data = dict(data)
        first, _, last = data.pop("name").strip().partition(" ")
        if not {"first_name", "firstName"} & data.keys():
            data["first_name"] = first or None
        if not {"last_name", "lastName"} & data.keys():
            data["last_name"] = last.strip() or None
    return data


class RegisterRequest(RequestModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)

    _name = model_validator(mode="before")(_split_name)


class LoginRequest(RequestModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)


class UserOut(ResponseModel):
    id: str
    email: str
    first_name: str | None
    last_name: str | None
    role: str
    subscription_tier: str
    is_active: bool
    email_verified: bool
    preferences: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def name(self) -> str | None:
        """First and last name as one display name."""
        return " ".join(part for part in (self.first_name, self.last_name) if part) or None


class UserUpdate(RequestModel):
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    preferences: dict[str, Any] | None = None

    _name = model_validator(mode="before")(_split_name)


class TokenResponse(ResponseModel):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (an OAuth token type, not a password)
    user: UserOut


class UserList(ResponseModel):
    users: list[UserOut]
    pagination: PaginationInfo
    links: PaginationLinks


class NotificationOut(ResponseModel):
    id: str
    type: str
    title: str
    message: str | None
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def read(self) -> bool:
        return self.read_at is not None


class NotificationList(ResponseModel):
    notifications: list[NotificationOut]
    unread_count: int
    pagination: PaginationInfo
    links: PaginationLinks
