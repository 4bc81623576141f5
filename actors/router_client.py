"""Messages to the task router, fire-and-forget: the database already holds what the message says, and the
router's periodic tick re-reads it, so a lost message delays routing by at most a tick."""

from __future__ import annotations

import logging
from typing import Any

import ray

from actors.names import ROUTER_NAME
from core.settings import Settings

log = logging.getLogger("orchestrator.router")


def notify(settings: Settings, method: str, *args: Any) -> None:
    if not ray.is_initialized():
        return
    try:
        router = ray.get_actor(ROUTER_NAME, namespace=settings.ray.ray_namespace)
        getattr(router, method).remote(*args)
    except Exception as exc:  # the router is restarting or absent: its tick catches up
        log.warning("router not told %s: %s", method, exc)


def stats(settings: Settings, timeout_s: float = 2.0) -> dict[str, Any] | None:
    if not ray.is_initialized():
        return None
    try:
        router = ray.get_actor(ROUTER_NAME, namespace=settings.ray.ray_namespace)
        return ray.get(router.stats.remote(), timeout=timeout_s)
    except Exception as exc:
        log.warning("router stats unavailable: %s", exc)
        return None
