"""Who is calling: the authenticated principal and the platform role hierarchy (admin > agent > user)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.errors import PermissionDenied
from services.scopes import scope_allows


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
    # A user id, or for machine identities "client:<id>" / "env:<NAME>" / a service token's subject.
    user_id: str
    role: Role
    # How the caller proved who they are: "jwt", "api_key", "env_api_key", "oauth_client", "service".
    via: str = "jwt"
    token_id: str | None = None
    token_family: str | None = None
    token_expires_at: int | None = None
    # None: no narrowing beyond the role. A tuple: only these `resource:action` scopes.
    scopes: tuple[str, ...] | None = None
    tier: str = "free"

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    @property
    def is_user_account(self) -> bool:
        """Whether `user_id` names a row of the users table (not a machine identity)."""
        return self.via in ("jwt", "api_key")

    def require_role(self, minimum: Role) -> None:
        if not self.role.at_least(minimum):
            raise PermissionDenied(f"This operation requires the '{minimum.value}' role")

    def require_scope(self, resource: str, action: str) -> None:
        if self.scopes is not None and not scope_allows(self.scopes, resource, action):
            raise PermissionDenied(f"This credential lacks the '{resource}:{action}' scope")
