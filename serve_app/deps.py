"""FastAPI dependencies: the app context, and authentication every protected route reuses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from core.errors import AuthenticationFailed
from serve_app.context import AppContext
from services import api_keys
from services.principal import Principal, Role

# auto_error=False: a missing credential becomes our 401 envelope, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="JWT access token, or an API key (ao_…)")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (ao_…)")


async def get_context(request: Request) -> AppContext:
    # async: a sync dependency would cost a thread hop per request for a dictionary read.
    return request.app.state.context


Context = Annotated[AppContext, Depends(get_context)]


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The caller, from a bearer JWT, a bearer API key or X-API-Key. Failures are counted per client IP,
    so that guessing tokens or keys runs into the rate limit."""
    context: AppContext = request.app.state.context
    credential = bearer.credentials if bearer is not None and bearer.credentials else api_key
    try:
        if not credential:
            raise AuthenticationFailed("Authentication required: send 'Authorization: Bearer <token>'")
        principal = await principal_for(context, credential.strip())
    except AuthenticationFailed:
        await context.rate_limits.check_client(request, "general")
        raise
    return principal


async def principal_for(context: AppContext, credential: str) -> Principal:
    """Who a credential names. A JWT is checked on the event loop (its signature is verified once per
    token) and its revocation with the other requests' of the moment (`AppContext.revocations`); an API
    key's lookup runs in a worker thread."""
    # Environment keys may have any format (e.g. 'admin-key-here'); the check is a hash compare.
    env_principal = api_keys.authenticate_env_key(context.settings.auth.env_api_keys, credential)
    if env_principal is not None:
        return env_principal
    if api_keys.looks_like_api_key(credential):
        return await run_in_threadpool(_api_key_principal, context, credential)

    claims = context.tokens.decode(credential)
    token_id = claims.get("jti")
    if token_id:
        subject = str(claims["sub"]) if claims.get("via") == "oauth_client" else None
        if await context.revocations.submit((str(token_id), claims.get("fam"), subject)):
            raise AuthenticationFailed("Token has been revoked")
    try:
        role = Role.parse(str(claims.get("role", "")))
    except ValueError as exc:
        raise AuthenticationFailed("Invalid token") from exc
    scopes = claims.get("scopes")
    return Principal(
        user_id=str(claims["sub"]),
        role=role,
        via=str(claims.get("via", "jwt")),
        token_id=str(token_id) if token_id else None,
        token_family=claims.get("fam"),
        token_expires_at=int(claims["exp"]),
        scopes=tuple(scopes) if isinstance(scopes, list) else None,
        tier=str(claims.get("tier", "free")),
    )


def _api_key_principal(context: AppContext, credential: str) -> Principal:
    with context.db.session() as session:
        lookup = api_keys.authenticate_api_key(session, credential)
    if lookup.stale_last_used:
        with context.db.transaction() as session:
            api_keys.touch_last_used(session, lookup.key_id)
    return lookup.principal


def require_role(minimum: Role):
    """A per-route dependency raising the router's minimum role (e.g. admin-only routes)."""

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        principal.require_role(minimum)
        return principal

    dependency.minimum_role = minimum  # type: ignore[attr-defined]
    return dependency


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
