"""Rate limits at the HTTP edge: which limit applies to a request, and the headers on every response.

Routes count through `RateLimitPolicy.check_principal` (protected routes, per caller) or `check_client`
(public ones, per client IP);
a response that no route counted (an unknown path, a malformed body) is counted per client IP by
`RateLimitHeadersMiddleware`, so every response carries X-RateLimit-* (docs/api.md "Rate limits").
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import RateLimited
from core.rate_limit_spec import Limit
from core.settings import RateLimitSettings
from services.login_throttle import LoginPolicy, MemoryLoginThrottle, RedisLoginThrottle, account_key
from services.principal import Principal
from services.rate_limit import Decision, RateLimiter

DECISION_KEY = "orchestrator.rate_limit"
CLASSES = ("general", "auth", "register", "executions", "health", "requirements", "files", "archives")


class RateLimitPolicy:
    def __init__(self, settings: RateLimitSettings, limiter: RateLimiter, logins: LoginThrottle | None = None) -> None:
        self.enabled = settings.rate_limit_enabled
        self._limiter = limiter
        self.logins = logins or MemoryLoginThrottle(login_policy(settings))
        self._tiers = {tier.lower(): factor for tier, factor in settings.rate_limit_tiers.items()}
        self._trusted = [ipaddress.ip_network(network) for network in settings.trusted_proxies]
        self._classes = {name: Limit.parse(getattr(settings, f"rate_limit_{name}")) for name in CLASSES}
        self._routes = {_route_key(key): Limit.parse(value) for key, value in settings.rate_limit_routes.items()}

    async def aclose(self) -> None:
        await self._limiter.aclose()

    async def check_principal(self, request: Request, route_class: str, principal: Principal) -> Decision | None:
        # Per caller, not per credential: a user's JWT and all their API keys share one budget.
        return await self._check(request, route_class, f"p:{principal.user_id}", tier=principal.tier)

    async def check_client(self, request: Request, route_class: str, *, extra: str = "") -> Decision | None:
        """Count a request per client IP (and `extra`, e.g. the account being logged into, kept as a hash)."""
        identity = f"ip:{self.client_ip(request.scope)}"
        return await self._check(request, route_class, f"{identity}:{account_key(extra)}" if extra else identity)

    async def count_uncounted(self, scope: Scope) -> Decision | None:
        if not self.enabled or scope.get(DECISION_KEY) is not None:
            return scope.get(DECISION_KEY)
        limit = self._classes["general"]
        decision = await self._limiter.hit(f"general:ip:{self.client_ip(scope)}", limit)
        scope[DECISION_KEY] = decision
        return decision

    async def check_login(self, email: str, scope: Scope) -> None:
        """The account's ceiling on failed logins from any address (`services.login_throttle`)."""
        if self.enabled and (retry_after_s := await self.logins.retry_after(email, self.client_ip(scope))):
            raise RateLimited(
                f"Too many failed logins for this account. Try again in {retry_after_s} seconds.",
                retry_after_s=retry_after_s,
            )

    def client_ip(self, scope: Scope) -> str:
        """The peer, or while the peer is a trusted proxy, the address it says it forwarded for: the rightmost
        `X-Forwarded-For` entry that is not itself a trusted proxy (what the client wrote further left is
        not believed)."""
        client = scope.get("client")
        hops = [
            part.strip()
            for name, value in scope.get("headers", [])
            if name == b"x-forwarded-for"
            for part in value.decode("latin-1").split(",")
            if part.strip()
        ]
        address = client[0] if client else "unknown"
        while hops and self._is_trusted(address):
            address = hops.pop()
        return address

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    async def _check(self, request: Request, route_class: str, identity: str, *, tier: str = "free") -> Decision | None:
        if not self.enabled:
            return None
        route_path = route_template(request.scope) if self._routes else None
        override = self._routes.get((request.method, route_path)) if route_path else None
        if override is not None:
            limit, bucket = override, f"route:{request.method}:{route_path}:{identity}"
        else:
            limit, bucket = self._classes[route_class], f"{route_class}:{identity}"
        decision = await self._limiter.hit(bucket, limit.scaled(self._tiers.get(tier.lower(), 1.0)))
        # The most specific decision of the request is the one its headers report.
        request.scope[DECISION_KEY] = decision
        if not decision.allowed:
            raise RateLimited(retry_after_s=decision.retry_after_s)
        return decision


LoginThrottle = MemoryLoginThrottle | RedisLoginThrottle


def login_policy(settings: RateLimitSettings) -> LoginPolicy:
    return LoginPolicy(
        free_failures=settings.login_free_failures,
        max_delay_s=settings.login_max_delay_s,
        failure_window_s=settings.login_failure_window_s,
    )


def route_template(scope: Scope) -> str:
    """The matched route's full path template, e.g. ``/api/v1/users/{user_id}``.

    Rebuilt from the request path and its path parameters: with FastAPI >= 0.165 the route in the scope
    is the router's own, without the prefixes it was included under.
    """
    by_value = {str(value): name for name, value in (scope.get("path_params") or {}).items()}
    return "/".join(f"{{{by_value[part]}}}" if part in by_value else part for part in scope["path"].split("/"))


def _route_key(text: str) -> tuple[str, str]:
    method, _, path = text.strip().partition(" ")
    if not path:
        raise ValueError(f"rate limit route '{text}' must be 'METHOD /path'")
    return method.upper(), path.strip()


class RateLimitHeadersMiddleware:
    """Adds X-RateLimit-* to every HTTP response; counts per IP what no route counted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                context = getattr(scope["app"].state, "context", None)
                decision = await context.rate_limits.count_uncounted(scope) if context is not None else None
                if decision is not None:
                    extra = [(name.lower().encode(), value.encode()) for name, value in decision.headers().items()]
                    existing = {name for name, _ in message.get("headers", [])}
                    message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in existing)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
