"""OAuth 2.0 client credentials: the token endpoint and client registration for admins (docs/api.md
"Identity and access")."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request, Response, status
from starlette.concurrency import run_in_threadpool

from core.errors import AuthenticationFailed, FieldIssue, MalformedRequest, ValidationFailed
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import PageParams, page_params, paginated
from serve_app.routing import protected_router, public_router
from serve_app.schemas.common import ErrorResponse, MessageResponse
from serve_app.schemas.identity import (
    AccessTokenResponse,
    OAuthClientCreate,
    OAuthClientCreated,
    OAuthClientList,
    OAuthClientOut,
)
from services import oauth
from services.principal import Role
from services.scopes import SCOPE_LIST_PATTERN

public = public_router(prefix="/oauth", tags=["oauth"], route_class=None)
clients = protected_router(prefix="/oauth/clients", tags=["oauth"], resource="system", min_role=Role.admin)


_TOKEN_REQUEST = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "client_id": {"type": "string", "description": "or HTTP Basic"},
        "client_secret": {"type": "string", "description": "or HTTP Basic"},
        "scope": {
            "type": "string",
            "pattern": SCOPE_LIST_PATTERN,
            "description": "space-separated; narrows the client's scopes",
        },
    },
}


@public.post(
    "/token",
    response_model=AccessTokenResponse,
    responses={401: {"model": ErrorResponse, "description": "AUTHENTICATION_ERROR: unknown or revoked client"}},
    # The body is read by hand (form or JSON, RFC 6749 §4.4), so FastAPI cannot describe it.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": _TOKEN_REQUEST},
                "application/json": {"schema": _TOKEN_REQUEST},
            },
        }
    },
)
async def token(request: Request, context: Context) -> AccessTokenResponse:
    """`grant_type=client_credentials` with `client_id`/`client_secret` in the form body (or JSON, or HTTP
    Basic); optional `scope` narrows the client's scopes."""
    fields = await _token_request_fields(request)
    if fields.get("grant_type") != "client_credentials":
        raise ValidationFailed(
            "Unsupported grant_type", details=[FieldIssue("grant_type", "only 'client_credentials' is supported")]
        )
    client_id, client_secret = _client_credentials(request, fields)
    await context.rate_limits.check_client(request, "auth", extra=client_id)

    def exchange() -> tuple:
        with context.db.session() as session:
            return oauth.exchange_client_credentials(
                session, context.tokens, client_id=client_id, client_secret=client_secret, scope=fields.get("scope")
            )

    issued, scopes = await run_in_threadpool(exchange)
    return AccessTokenResponse(access_token=issued.token, expires_in=issued.expires_in, scope=" ".join(scopes))


async def _token_request_fields(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError as exc:
            raise MalformedRequest("Request body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise ValidationFailed("Expected a JSON object")
        return {str(key): str(value) for key, value in body.items() if isinstance(value, str | int)}
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _client_credentials(request: Request, fields: dict[str, str]) -> tuple[str, str]:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthenticationFailed("Malformed Basic credentials") from exc
        client_id, _, client_secret = decoded.partition(":")
    else:
        client_id, client_secret = fields.get("client_id", ""), fields.get("client_secret", "")
    if not client_id or not client_secret:
        raise AuthenticationFailed("client_id and client_secret are required")
    return client_id, client_secret


@clients.post("", status_code=status.HTTP_201_CREATED, response_model=OAuthClientCreated)
def register_client(
    body: OAuthClientCreate, principal: CurrentPrincipal, context: Context, response: Response
) -> OAuthClientCreated:
    """Register a machine client; the secret is in this response only."""
    with context.db.transaction() as session:
        client, secret = oauth.register_client(
            session,
            name=body.name,
            role=Role.parse(body.role),
            scopes=body.scopes,
            created_by=principal.user_id if principal.is_user_account else None,
        )
        created = OAuthClientCreated(**OAuthClientOut.model_validate(client).model_dump(), client_secret=secret)
    response.headers["Location"] = f"/api/v1/oauth/clients/{created.id}"
    response.headers["Cache-Control"] = "no-store"
    return created


@clients.get("", response_model=OAuthClientList)
def list_clients(request: Request, context: Context, params: Annotated[PageParams, Depends(page_params)]) -> dict:
    with context.db.session() as session:
        page = oauth.list_clients(session, page=params.page, limit=params.limit)
        items = [OAuthClientOut.model_validate(client) for client in page.items]
    return paginated(request, "clients", items, page)


@clients.delete("/{client_pk}", response_model=MessageResponse)
def revoke_client(client_pk: str, context: Context) -> MessageResponse:
    """Revoke a client; the access tokens it already holds stop working at once."""
    with context.db.transaction() as session:
        oauth.revoke_client(session, client_pk, token_ttl_s=context.tokens.access_ttl_s)
    return MessageResponse(message="OAuth client revoked")
