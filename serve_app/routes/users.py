"""Users: the caller's profile, and the user directory for admins (docs/api.md "Identity and access")."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from core.errors import NotFound
from persistence.repositories import users as users_repo
from serve_app.deps import Context, CurrentPrincipal, require_role
from serve_app.pagination import PageParams, page_params, paginated
from serve_app.routing import protected_router
from serve_app.schemas.common import MessageResponse
from serve_app.schemas.users import NotificationList, NotificationOut, UserList, UserOut, UserUpdate
from services import notifications, users
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


@router.get("/me/notifications", response_model=NotificationList)
def list_my_notifications(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    unread: Annotated[bool, Query(description="only those not yet read")] = False,
) -> dict:
    """Your notifications, newest first: mentions, your tasks assigned, your approval requests decided."""
    _require_account(principal)
    with context.db.session() as session:
        page = notifications.list_notifications(
            session, principal.user_id, page=params.page, limit=params.limit, unread_only=unread
        )
        items = [NotificationOut.model_validate(item) for item in page.items]
        count = notifications.unread_count(session, principal.user_id)
    return {**paginated(request, "notifications", items, page), "unread_count": count}


@router.put("/me/notifications/read-all", response_model=MessageResponse)
def mark_all_notifications_read(principal: CurrentPrincipal, context: Context) -> MessageResponse:
    _require_account(principal)
    with context.db.transaction() as session:
        count = notifications.mark_all_read(session, principal.user_id)
    return MessageResponse(message=f"{count} notification(s) marked read")


@router.put("/me/notifications/{notification_id}/read", response_model=NotificationOut)
def mark_notification_read(notification_id: str, principal: CurrentPrincipal, context: Context) -> NotificationOut:
    _require_account(principal)
    with context.db.transaction() as session:
        return NotificationOut.model_validate(notifications.mark_read(session, principal.user_id, notification_id))


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
