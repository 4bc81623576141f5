"""End-to-end fixtures: the platform started the way a user starts it, once per test session.

The fixtures (`platform`, `http`, `owner`, `platform_db`, `approver` …) live in `tests/platform_fixtures.py`,
registered for every suite by the root `tests/conftest.py`, so that `tests/chaos` shares this session's one
platform (and one Ray instance). The names below are what the end-to-end tests import from here.
"""

from __future__ import annotations

from tests.platform_fixtures import (
    E2E_CPUS,
    E2E_HEARTBEAT_TIMEOUT_S,
    E2E_IDLE_TIMEOUT_S,
    E2E_REPLICAS,
    E2E_WS_BUFFER,
    REPO_ROOT,
    STARTUP_TIMEOUT_S,
    Platform,
    make_admin,
)

__all__ = [
    "E2E_CPUS",
    "E2E_HEARTBEAT_TIMEOUT_S",
    "E2E_IDLE_TIMEOUT_S",
    "E2E_REPLICAS",
    "E2E_WS_BUFFER",
    "REPO_ROOT",
    "STARTUP_TIMEOUT_S",
    "Platform",
    "make_admin",
]
