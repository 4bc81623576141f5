"""Router factories that make protection the default.

`protected_router(min_role=…)` attaches authentication and a minimum platform role to every route it
holds; `public_router()` is the only way to declare a route public. `assert_routes_protected` runs when
the app is built and refuses to start an app with a route that is neither, so a forgotten check is a
start-up error rather than an open endpoint.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from serve_app.deps import authenticate, require_role
from serve_app.schemas.common import ErrorResponse
from services.principal import Role

PUBLIC_FLAG = "x-public"

_ERRORS = {
    401: {"model": ErrorResponse, "description": "AUTHENTICATION_ERROR"},
    403: {"model": ErrorResponse, "description": "AUTHORIZATION_ERROR"},
    422: {"model": ErrorResponse, "description": "VALIDATION_ERROR (400 for malformed JSON)"},
    429: {"model": ErrorResponse, "description": "RATE_LIMIT_EXCEEDED"},
}


def protected_router(*, min_role: Role = Role.user, **kwargs: Any) -> APIRouter:
    return APIRouter(dependencies=[Depends(require_role(min_role))], responses=_ERRORS, **kwargs)


class PublicRoute(APIRoute):
    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        kwargs["openapi_extra"] = {**(kwargs.get("openapi_extra") or {}), PUBLIC_FLAG: True}
        super().__init__(path, endpoint, **kwargs)


def public_router(**kwargs: Any) -> APIRouter:
    return APIRouter(route_class=PublicRoute, responses={422: _ERRORS[422], 429: _ERRORS[429]}, **kwargs)


def is_public(route: APIRoute) -> bool:
    return bool((route.openapi_extra or {}).get(PUBLIC_FLAG))


def minimum_role(route: APIRoute) -> Role | None:
    """The highest minimum role any dependency of the route asks for (None: authentication only)."""
    roles = [role for role in _walk_minimum_roles(route.dependant) if role is not None]
    return max(roles, key=lambda role: role.rank) if roles else None


def _calls(dependant: Dependant):
    for dep in dependant.dependencies:
        yield dep.call
        yield from _calls(dep)


def _walk_minimum_roles(dependant: Dependant):
    for call in _calls(dependant):
        yield getattr(call, "minimum_role", None)


def requires_authentication(route: APIRoute | APIWebSocketRoute) -> bool:
    return any(call is authenticate for call in _calls(route.dependant))


def assert_routes_protected(app: FastAPI) -> None:
    open_routes = [
        f"{sorted(route.methods)} {route.path}"
        for route in app.routes
        if isinstance(route, APIRoute) and not is_public(route) and not requires_authentication(route)
    ]
    if open_routes:
        raise RuntimeError(f"routes without authentication (use protected_router/public_router): {open_routes}")
