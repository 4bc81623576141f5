"""Identity: registration, login, refresh, logout, service tokens and API keys (docs/api.md
"Identity and access")."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Response, status
from starlette.concurrency import run_in_threadpool

from core.clock import utcnow
from core.errors import AuthenticationFailed, FieldIssue, ValidationFailed
from serve_app.context import AppContext
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import PageParams, page_params, paginated
from serve_app.routing import count_client, protected_router, public_router
from serve_app.schemas.common import ErrorResponse, MessageResponse
from serve_app.schemas.identity import (
    AccessTokenResponse,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    LogoutRequest,
    RefreshRequest,
    RefreshResponse,
    ServiceTokenRequest,
)
from serve_app.schemas.users import LoginRequest, RegisterRequest, TokenResponse, UserOut
from services import api_keys, sessions, users
from services.principal import Role

public = public_router(prefix="/auth", tags=["auth"], route_class=None)
router = protected_router(prefix="/auth", tags=["auth"], resource=None)
# Minting tokens is platform administration: a scoped credential needs `system:write` for it.
service = protected_router(prefix="/auth", tags=["auth"], resource="system", min_role=Role.admin)
keys = protected_router(prefix="/auth/api-keys", tags=["api keys"], resource="api_keys")


@public.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses={409: {"description": "CONFLICT: email already registered"}},
    dependencies=[Depends(count_client("register"))],
)
def register(body: RegisterRequest, context: Context, response: Response) -> UserOut:
    """Create an account. The first account on an empty platform becomes `admin`."""
    password_hash = users.prepare_password(body.password, context.registration)
    with context.db.transaction() as session:
        user = users.register_user(
            session,
            email=str(body.email),
            password_hash=password_hash,
            first_name=body.first_name,
            last_name=body.last_name,
            policy=context.registration,
        )
        result = UserOut.model_validate(user)
    response.headers["Location"] = f"/api/v1/users/{result.id}"
    return result


@public.post(
    "/login",
    response_model=TokenResponse,
    responses={401: {"model": ErrorResponse, "description": "AUTHENTICATION_ERROR: wrong email or password"}},
)
async def login(body: LoginRequest, request: Request, context: Context) -> TokenResponse:
    """Exchange email and password for an access token and a refresh token.

    Limited per client IP and account (`ORCHESTRATOR_RATE_LIMIT_AUTH`, 10 per 15 minutes). Past
    `ORCHESTRATOR_LOGIN_FREE_FAILURES` failures for one account from any addresses, each further attempt
    waits twice as long as the one before (429 with `Retry-After`), except from an address the account
    logged in from before."""
    limits, email = context.rate_limits, str(body.email)
    await limits.check_client(request, "auth", extra=email)
    await limits.check_login(email, request.scope)
    try:
        issued = await run_in_threadpool(_login, body, context)
    except AuthenticationFailed:
        await limits.logins.failed(email)
        raise
    await limits.logins.succeeded(email, limits.client_ip(request.scope))
    return issued


def _login(body: LoginRequest, context: AppContext) -> TokenResponse:
    with context.db.session() as session:
        user = users.authenticate_password(session, email=str(body.email), password=body.password)
    with context.db.transaction() as session:
        user = users.record_login(session, user.id, password=body.password)
        issued = sessions.start_session(session, context.tokens, user)
        profile = UserOut.model_validate(user)
    return TokenResponse(
        access_token=issued.access.token,
        refresh_token=issued.refresh.token,
        expires_in=issued.access.expires_in,
        user=profile,
    )


@public.post(
    "/refresh",
    response_model=RefreshResponse,
    responses={401: {"model": ErrorResponse, "description": "AUTHENTICATION_ERROR: unknown, expired or reused"}},
    dependencies=[Depends(count_client("general"))],
)
def refresh(body: RefreshRequest, context: Context) -> RefreshResponse:
    """Rotate a refresh token. Presenting an already-used one revokes every token of its login."""
    with context.db.transaction() as session:
        issued = sessions.rotate_refresh_token(session, context.tokens, body.refresh_token)
    return RefreshResponse(
        access_token=issued.access.token, refresh_token=issued.refresh.token, expires_in=issued.access.expires_in
    )


@router.post("/logout", response_model=MessageResponse)
def logout(principal: CurrentPrincipal, context: Context, body: LogoutRequest | None = None) -> MessageResponse:
    """Revoke the current access token and every refresh token of its login."""
    with context.db.transaction() as session:
        sessions.logout(session, context.tokens, principal, body.refresh_token if body else None)
    return MessageResponse(message="Successfully logged out")


@service.post("/token", response_model=AccessTokenResponse)
def service_token(body: ServiceTokenRequest, context: Context) -> AccessTokenResponse:
    """Mint an access token for a service identity `{user_id, role}`."""
    ttl = body.expires_in or context.tokens.access_ttl_s
    if ttl > context.settings.auth.service_token_max_ttl_s:
        raise ValidationFailed(
            "expires_in is too long",
            details=[FieldIssue("expires_in", f"at most {context.settings.auth.service_token_max_ttl_s} seconds")],
        )
    issued = context.tokens.issue_access(subject=body.user_id, role=body.role, ttl_s=ttl, via="service")
    return AccessTokenResponse(access_token=issued.token, expires_in=issued.expires_in)


@keys.get("", response_model=ApiKeyList)
def list_api_keys(
    request: Request, principal: CurrentPrincipal, context: Context, params: Annotated[PageParams, Depends(page_params)]
) -> dict:
    with context.db.session() as session:
        page = api_keys.list_api_keys(session, principal.user_id, page=params.page, limit=params.limit)
        items = [ApiKeyOut.model_validate(record) for record in page.items]
    return paginated(request, "api_keys", items, page)


@keys.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
def create_api_key(
    body: ApiKeyCreate, principal: CurrentPrincipal, context: Context, response: Response
) -> ApiKeyCreated:
    """Create an API key (`ao_` + 64 hex). The key is in this response only; store it now."""
    if not principal.is_user_account:
        raise ValidationFailed("API keys belong to user accounts; machine identities cannot create them")
    expires_at = body.expires_at
    if body.expires_in_days:
        expires_at = utcnow() + timedelta(days=body.expires_in_days)
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed("expires_at must be in the future", details=[FieldIssue("expires_at", "in the past")])
    scopes = api_keys.scopes_within(principal, body.permissions)
    with context.db.transaction() as session:
        record, key = api_keys.create_api_key(
            session, user_id=principal.user_id, name=body.name, scopes=scopes, expires_at=expires_at
        )
        created = ApiKeyCreated(**ApiKeyOut.model_validate(record).model_dump(), key=key)
    response.headers["Location"] = f"/api/v1/auth/api-keys/{created.id}"
    response.headers["Cache-Control"] = "no-store"
    return created


@keys.delete("/{key_id}", response_model=MessageResponse)
def revoke_api_key(key_id: str, principal: CurrentPrincipal, context: Context) -> MessageResponse:
    with context.db.transaction() as session:
        api_keys.revoke_api_key(session, principal, key_id)
    return MessageResponse(message="API key revoked")
