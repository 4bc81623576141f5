"""FastAPI dependencies: the app context, and authentication/authorization every route reuses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from core.errors import AuthenticationFailed
from serve_app.context import AppContext
from services.principal import Principal, Role

# auto_error=False: a missing credential becomes our 401 envelope, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="JWT access token or API key")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (ao_…)")


def get_context(request: Request) -> AppContext:
    return request.app.state.context


Context = Annotated[AppContext, Depends(get_context)]


def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    context: AppContext = request.app.state.context
    if bearer is not None and bearer.credentials:
        credential = bearer.credentials
    elif api_key:
        credential = api_key
    else:
        raise AuthenticationFailed("Authentication required: send 'Authorization: Bearer <token>'")
    claims = context.tokens.decode(credential)
    try:
        role = Role.parse(str(claims.get("role", "")))
    except ValueError as exc:
        raise AuthenticationFailed("Invalid token") from exc
    principal = Principal(
        user_id=str(claims["sub"]),
        role=role,
        via="jwt",
        token_id=str(claims["jti"]),
        token_expires_at=int(claims["exp"]),
    )
    request.state.principal = principal
    return principal


def require_role(minimum: Role):
    """A dependency that authenticates and then requires at least `minimum`."""

    def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        principal.require_role(minimum)
        return principal

    dependency.minimum_role = minimum  # type: ignore[attr-defined]
    return dependency


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
