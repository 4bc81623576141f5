"""The Serve deployment takes its replica count, autoscaling and request limits from settings."""

from __future__ import annotations

from core.settings import load_settings
from serve_app.deployment import DEPLOYMENT_NAME, build_application


def _config(**api: object):
    application = build_application(load_settings(api=api))
    return application._bound_deployment._deployment_config, application._bound_deployment


def test_fixed_replicas_by_default() -> None:
    config, deployment = _config(api_replicas=3, api_max_ongoing_requests=128)
    assert deployment.name == DEPLOYMENT_NAME
    assert config.num_replicas == 3 and config.autoscaling_config is None
    assert config.max_ongoing_requests == 128


def test_autoscaling_when_the_maximum_exceeds_the_minimum() -> None:
    config, _ = _config(api_min_replicas=1, api_max_replicas=4, api_target_ongoing_requests=16)
    assert config.autoscaling_config.min_replicas == 1
    assert config.autoscaling_config.max_replicas == 4
    assert config.autoscaling_config.target_ongoing_requests == 16
