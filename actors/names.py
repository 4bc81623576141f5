"""Names of the platform's actors, as the Ray dashboard lists them (docs/architecture.md "The actors")."""

from __future__ import annotations

STORE_NAME = "store"
RECONCILER_NAME = "reconciler"
ROUTER_NAME = "router"
RUN_POOL_NAME = "runs"
EVENT_HUB_NAME = "event-hub"
AGENT_PREFIX = "agent:"


def agent_actor_name(agent_id: str) -> str:
    return f"{AGENT_PREFIX}{agent_id}"


def approval_actor_name(approval_id: str) -> str:
    return f"approval:{approval_id}"
