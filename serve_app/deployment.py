"""The Ray Serve ingress deployment: each replica builds the FastAPI app from the settings it is bound to."""

from __future__ import annotations

from typing import Any

from ray import serve

from core.settings import ApiSettings, Settings
from serve_app.app import create_app

APP_NAME = "orchestrator"
DEPLOYMENT_NAME = "Api"


@serve.ingress()
class Api:
    """The API ingress. Settings arrive already resolved (secrets included) from the process that
    deployed it, so a replica on another node needs nothing from the head node's disk."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self._settings)


def deployment_options(api: ApiSettings) -> dict[str, Any]:
    """The API deployment's options: what `build_application` deploys and what Serve's config file states."""
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": api.api_max_ongoing_requests,
        "ray_actor_options": {"num_cpus": api.api_cpus_per_replica},
        "health_check_period_s": 10,
    }
    if api.autoscaling:
        options["autoscaling_config"] = {
            "min_replicas": api.api_min_replicas,
            "max_replicas": api.api_max_replicas,
            "target_ongoing_requests": api.api_target_ongoing_requests,
        }
    else:
        options["num_replicas"] = api.api_replicas
    return options


def build_application(settings: Settings) -> serve.Application:
    return serve.deployment(Api).options(**deployment_options(settings.api)).bind(settings)
