"""Who is calling: the authenticated principal and the platform role hierarchy (admin > agent > user)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from core.errors import PermissionDenied


class Role(StrEnum):
    user = "user"  # read-only
    agent = "agent"  # may create, run and decide
    admin = "admin"  # everything

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank

    @classmethod
    def parse(cls, value: str) -> Role:
        return cls(value.strip().lower())


_RANKS = {Role.user: 0, Role.agent: 1, Role.admin: 2}


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: Role
    # How the caller proved who they are: "jwt", "api_key", "env_api_key", "service".
    via: str = "jwt"
    token_id: str | None = None
    token_expires_at: int | None = None
    # None: no narrowing beyond the role. A set: only these `resource:action` scopes.
    scopes: frozenset[str] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    def require_role(self, minimum: Role) -> None:
        if not self.role.at_least(minimum):
            raise PermissionDenied(f"This operation requires the '{minimum.value}' role")
