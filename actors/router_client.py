"""Messages to the task router, fire-and-forget: the database already holds what the message says, and the
router's periodic tick re-reads it, so a lost message delays routing by at most a tick."""

from __future__ import annotations

import logging
from typing import Any

import ray

from actors.names import ROUTER_NAME
from core.settings import Settings

log = logging.getLogger("orchestrator.router")

# The router's handle, looked up once per process (a lookup is a round trip to Ray's control store, which
# would otherwise be paid on every task created); forgotten when a call through it fails.
_handles: dict[str, Any] = {}


def _router(settings: Settings) -> Any:
    namespace = settings.ray.ray_namespace
    handle = _handles.get(namespace)
    if handle is None:
        handle = _handles[namespace] = ray.get_actor(ROUTER_NAME, namespace=namespace)
    return handle


def notify(settings: Settings, method: str, *args: Any) -> None:
    if not ray.is_initialized():
        return
    try:
        getattr(_router(settings), method).remote(*args)
    except Exception as exc:  # the router is restarting or absent: its tick catches up
        _handles.pop(settings.ray.ray_namespace, None)
        log.warning("router not told %s: %s", method, exc)


def stats(settings: Settings, timeout_s: float = 2.0) -> dict[str, Any] | None:
    if not ray.is_initialized():
        return None
    try:
        return ray.get(_router(settings).stats.remote(), timeout=timeout_s)
    except Exception as exc:
        _handles.pop(settings.ray.ray_namespace, None)
        log.warning("router stats unavailable: %s", exc)
        return None
