"""Identity: registration and password login (seed 000)."""

from __future__ import annotations

from fastapi import Response, status

from serve_app.deps import Context
from serve_app.routing import public_router
from serve_app.schemas.users import LoginRequest, RegisterRequest, TokenResponse, UserOut
from services import users

public = public_router(prefix="/auth", tags=["auth"])


@public.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses={409: {"description": "CONFLICT: email already registered"}},
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


@public.post("/login", response_model=TokenResponse)
def login(body: LoginRequest, context: Context) -> TokenResponse:
    """Exchange email and password for an access token and a refresh token."""
    with context.db.session() as session:
        user = users.authenticate_password(session, email=str(body.email), password=body.password)
    with context.db.transaction() as session:
        user = users.record_login(session, user.id, password=body.password)
        profile = UserOut.model_validate(user)
    access = context.tokens.issue_access(subject=profile.id, role=profile.role)
    refresh = context.tokens.issue_refresh(subject=profile.id, role=profile.role, family=access.jti)
    return TokenResponse(
        access_token=access.token,
        refresh_token=refresh.token,
        expires_in=access.expires_in,
        token_type="Bearer",  # noqa: S106 (an OAuth token type, not a password)
        user=profile,
    )
