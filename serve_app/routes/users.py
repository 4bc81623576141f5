"""Users: the caller's profile, and the user directory for admins (seeds 000, 003)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from core.errors import NotFound
from persistence.repositories import users as users_repo
from serve_app.deps import Context, CurrentPrincipal, require_role
from serve_app.pagination import PageParams, page_params, paginated
from serve_app.routing import protected_router
from serve_app.schemas.users import UserList, UserOut, UserUpdate
from services import users
from services.principal import Principal, Role

router = protected_router(prefix="/users", tags=["users"], resource="users")


def _require_account(principal: Principal) -> None:
    if not principal.is_user_account:
        raise NotFound("No user account for this identity (a service token, OAuth client or environment key)")


@router.get("/me", response_model=UserOut)
def get_me(principal: CurrentPrincipal, context: Context) -> UserOut:
    _require_account(principal)
    with context.db.session() as session:
        return UserOut.model_validate(users.get_active_user(session, principal.user_id))


@router.put("/me", response_model=UserOut)
def update_me(body: UserUpdate, principal: CurrentPrincipal, context: Context) -> UserOut:
    _require_account(principal)
    with context.db.transaction() as session:
        user = users.update_profile(session, principal.user_id, body.model_dump(exclude_unset=True))
        return UserOut.model_validate(user)


@router.get("", response_model=UserList, dependencies=[Depends(require_role(Role.admin))])
def list_users(
    request: Request,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> dict:
    with context.db.session() as session:
        page = users_repo.list_users(session, page=params.page, limit=params.limit, search=search)
        items = [UserOut.model_validate(user) for user in page.items]
    return paginated(request, "users", items, page)


@router.get("/{user_id}", response_model=UserOut)
def get_user(user_id: str, principal: CurrentPrincipal, context: Context) -> UserOut:
    """A user's profile: admins see anyone, others only themselves (anything else is 404)."""
    if not principal.is_admin and user_id != principal.user_id:
        raise NotFound("User not found")
    with context.db.session() as session:
        user = users_repo.get_user(session, user_id)
        if user is None:
            raise NotFound("User not found")
        return UserOut.model_validate(user)
