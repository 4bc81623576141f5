"""Health: `/health`, `/api/v1/health` and `/api/v1/system/health` (public)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from core.errors import ServiceUnavailable
from serve_app.deps import Context
from serve_app.routing import public_router

root = public_router(tags=["health"], route_class="health")
router = public_router(tags=["health"], route_class="health")


async def _health(context: Context) -> JSONResponse:
    report = await context.health.report()
    if report["status"] == "unhealthy":
        return JSONResponse(report, status_code=503, headers={"Retry-After": str(ServiceUnavailable.retry_after_s)})
    return JSONResponse(report)


_DOC = {
    "summary": "Platform health",
    "description": "healthy | degraded | unhealthy with a check per dependency (database, redis, ray, serve), "
    "each with status pass | warn | fail and its response time in ms. 503 when unhealthy.",
    "responses": {503: {"description": "unhealthy (with `Retry-After`)"}},
}
root.add_api_route("/health", _health, methods=["GET"], **_DOC)
router.add_api_route("/health", _health, methods=["GET"], operation_id="api_health", **_DOC)
router.add_api_route("/system/health", _health, methods=["GET"], operation_id="system_health", **_DOC)
