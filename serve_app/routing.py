"""Router factories that make protection the default.

`protected_router(min_role=…)` attaches authentication and a minimum platform role to every route it
holds; `public_router()` is the only way to declare a route public. `assert_routes_protected` runs when
the app is built and refuses to start an app with a route that is neither, so a forgotten check is a
start-up error rather than an open endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from core.settings import Settings
from serve_app.deps import authenticate
from serve_app.schemas.common import ErrorResponse
from serve_app.schemas.identity import ServiceTokenRequest
from services.principal import Principal, Role
from services.scopes import RESOURCES, action_for_method

PUBLIC_FLAG = "x-public"

_ERRORS = {
    401: {"model": ErrorResponse, "description": "AUTHENTICATION_ERROR"},
    403: {"model": ErrorResponse, "description": "AUTHORIZATION_ERROR"},
    422: {"model": ErrorResponse, "description": "VALIDATION_ERROR (400 for malformed JSON)"},
    429: {"model": ErrorResponse, "description": "RATE_LIMIT_EXCEEDED"},
}


def authorize(minimum: Role, resource: str | None, route_class: str = "general", write_role: Role | None = None):
    """Authenticate, count the request against the caller's rate limit, then check the platform role
    (`write_role` for methods other than GET/HEAD/OPTIONS) and, for scoped credentials (API keys,
    OAuth clients), the `resource:read|write` scope."""
    if resource is not None and resource not in RESOURCES:
        raise ValueError(f"unknown scope resource '{resource}'")

    async def dependency(request: Request, principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        await request.app.state.context.rate_limits.check_principal(request, route_class, principal)
        action = action_for_method(request.method)
        principal.require_role(write_role if action == "write" and write_role is not None else minimum)
        if resource is not None:
            principal.require_scope(resource, action)
        return principal

    dependency.minimum_role = minimum  # type: ignore[attr-defined]
    dependency.write_role = write_role  # type: ignore[attr-defined]
    return dependency


def protected_router(
    *, resource: str | None, min_role: Role = Role.user, write_role: Role | None = None, **kwargs: Any
) -> APIRouter:
    """A router whose every route authenticates, is rate-limited per caller, requires `min_role`
    (`write_role` for writes) and, for scoped credentials, the scope `<resource>:read` for GET/HEAD and
    `<resource>:write` otherwise."""
    dependency = Depends(authorize(min_role, resource, write_role=write_role))
    return APIRouter(dependencies=[dependency], responses=_ERRORS, **kwargs)


def count_principal(route_class: str):
    """A further rate-limit class for some routes of a protected router (`executions`: runs started, 100/h by
    default; docs/api.md "Rate limits")."""

    async def dependency(request: Request, principal: Annotated[Principal, Depends(authenticate)]) -> None:
        await request.app.state.context.rate_limits.check_principal(request, route_class, principal)

    return dependency


class PublicRoute(APIRoute):
    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        kwargs["openapi_extra"] = {**(kwargs.get("openapi_extra") or {}), PUBLIC_FLAG: True}
        super().__init__(path, endpoint, **kwargs)


def count_client(route_class: str):
    """A dependency counting a public request per client IP in `route_class`."""

    async def dependency(request: Request) -> None:
        await request.app.state.context.rate_limits.check_client(request, route_class)

    return dependency


def public_router(*, route_class: str | None = "general", **kwargs: Any) -> APIRouter:
    """The only way to declare routes public. `route_class=None`: the routes count themselves."""
    dependencies = [Depends(count_client(route_class))] if route_class else []
    return APIRouter(
        route_class=PublicRoute,
        dependencies=dependencies,
        responses={422: _ERRORS[422], 429: _ERRORS[429]},
        **kwargs,
    )


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """A route as the app serves it: full path, methods, and its effective dependencies."""

    path: str
    methods: frozenset[str]
    dependant: Dependant
    openapi_extra: dict[str, Any]


def api_routes(app: FastAPI) -> Iterator[RouteInfo]:
    """Every HTTP API route with its full path, including routes of included routers.

    FastAPI >= 0.165 keeps included routers as wrappers instead of copying their routes into
    `app.routes`, so walking `app.routes` alone would see none of them.
    """
    for context, _ in _route_contexts(app):
        yield RouteInfo(
            context.path, frozenset(context.methods or ()), context.dependant, dict(context.openapi_extra or {})
        )


def _route_contexts(app: FastAPI) -> Iterator[tuple[Any, APIRoute]]:
    """(the route as served, with its full path; the APIRoute it comes from) for every HTTP API route."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are flattened into app.routes
        contexts: Any = app.routes
    else:
        contexts = iter_route_contexts(app.routes)
    for context in contexts:
        original = getattr(context, "original_route", context)
        if isinstance(original, APIRoute):
            yield context, original


_ERROR_SCHEMA = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_NOT_FOUND = "NOT_FOUND: a resource the path, body or query names (also another tenant's)"
_WRITE_ERRORS = {
    "400": "VALIDATION_ERROR: malformed JSON",
    "409": "CONFLICT, or INVALID_TRANSITION for a change the current state does not allow",
    "413": "PAYLOAD_TOO_LARGE",
}
_UNAVAILABLE = "SERVICE_UNAVAILABLE (e.g. the database, or Ray's control store for a call needing it, is down)"
_RETRY_AFTER = {"description": "Seconds to wait before trying again", "schema": {"type": "integer", "minimum": 0}}
_WRITES = frozenset({"post", "put", "patch", "delete"})
# Creates whose resource lives under another collection than the create's own path.
_CREATED_UNDER = {
    "/api/v1/agents/{agent_id}/workflows": "/api/v1/workflows",
    "/api/v1/workflows/{workflow_id}/execute": "/api/v1/executions",
}
_METHODS = _WRITES | {"get", "head", "options"}


def document_openapi(app: FastAPI, settings: Settings) -> None:
    """Add to the OpenAPI description the error statuses every route of a kind can answer (docs/api.md
    "Errors": each code with its HTTP status in the spec): 404 where the path names a resource and on
    authenticated writes (a body may name an agent, workflow or organization), 400/409/413 for writes, 503
    everywhere. What a route declares itself is kept. Done on the generated document, as FastAPI copies a
    route's responses when routers are included. tests/integration/test_openapi_conformance.py checks
    every status answered under fuzzing is declared. The bounds that are settings (`_settings_bounds`) are
    stated as this app's settings have them."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        for path, item in spec.get("paths", {}).items():
            for method, operation in item.items():
                if method not in _METHODS:
                    continue
                added = {"503": _UNAVAILABLE}
                if "{" in path or (method in _WRITES and operation.get("security")):
                    added["404"] = _NOT_FOUND
                if method in _WRITES:
                    added.update(_WRITE_ERRORS)
                responses = operation.setdefault("responses", {})
                for code, description in added.items():
                    responses.setdefault(code, {"description": description, "content": _ERROR_SCHEMA})
                for code in ("429", "503"):
                    if code in responses:
                        responses[code].setdefault("headers", {}).setdefault("Retry-After", _RETRY_AFTER)
        _link_created(spec["paths"])
        _settings_bounds(spec["components"]["schemas"], settings)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _settings_bounds(schemas: dict[str, Any], settings: Settings) -> None:
    """Bounds a route takes from the settings, which a request model cannot state: the longest lifetime of a
    token minted by `POST /auth/token` (`expires_in`, checked by the route)."""
    field = ServiceTokenRequest.model_fields["expires_in"]
    expires_in = schemas[ServiceTokenRequest.__name__]["properties"][field.alias or "expires_in"]
    for option in expires_in.get("anyOf", [expires_in]):
        if option.get("type") == "integer":
            option["maximum"] = settings.auth.service_token_max_ttl_s


def _link_created(paths: dict[str, Any]) -> None:
    """OpenAPI links from each create (a POST answering 201 with the new resource's `id`) to what reads and
    acts on that resource: every operation on `<collection>/{id}` and below it that takes no other parameter
    in its path. Clients and stateful testers follow them (create → get → act)."""
    for path, item in paths.items():
        created = item.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        collection = re.escape(_CREATED_UNDER.get(path, path))
        for target, target_item in paths.items():
            match = re.fullmatch(collection + r"/\{(\w+)\}(/[^{}]*)?", target)
            if match is None:
                continue
            for method, operation in target_item.items():
                if method in _METHODS and "operationId" in operation:
                    created.setdefault("links", {})[operation["operationId"]] = {
                        "operationId": operation["operationId"],
                        # A membership answers the member's `user_id`; everything else its own `id`.
                        "parameters": {
                            match.group(1): f"$response.body#/{'user_id' if match.group(1) == 'user_id' else 'id'}"
                        },
                    }


def is_public(route: RouteInfo | APIRoute) -> bool:
    return bool((route.openapi_extra or {}).get(PUBLIC_FLAG))


def minimum_role(route: RouteInfo, method: str = "GET") -> Role | None:
    """The highest minimum role the route's dependencies ask of `method` (None: authentication only)."""
    roles = [role for role in _walk_minimum_roles(route.dependant, method) if role is not None]
    return max(roles, key=lambda role: role.rank) if roles else None


def _calls(dependant: Dependant):
    for dep in dependant.dependencies:
        yield dep.call
        yield from _calls(dep)


def _walk_minimum_roles(dependant: Dependant, method: str):
    writing = action_for_method(method) == "write"
    for call in _calls(dependant):
        write_role = getattr(call, "write_role", None)
        yield write_role if writing and write_role is not None else getattr(call, "minimum_role", None)


def requires_authentication(route: RouteInfo) -> bool:
    return any(call is authenticate for call in _calls(route.dependant))


def assert_routes_protected(app: FastAPI) -> None:
    routes = list(api_routes(app))
    if not routes:
        raise RuntimeError("no API routes found: the route walker does not understand this FastAPI version")
    open_routes = [
        f"{sorted(route.methods)} {route.path}"
        for route in routes
        if not is_public(route) and not requires_authentication(route)
    ]
    if open_routes:
        raise RuntimeError(f"routes without authentication (use protected_router/public_router): {open_routes}")
