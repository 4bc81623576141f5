"""The agent lifecycle as data: `draft → deploying → active ⇄ inactive`, and `error`.

Whether an agent receives new work is a separate flag (`is_active`, enable/disable), not a status.
Every status change goes through `transition`, so the allowed moves live in this one table.
"""

from __future__ import annotations

from enum import StrEnum

from schedulers.lifecycle import checked, require_complete


class AgentStatus(StrEnum):
    draft = "draft"  # created, never deployed
    deploying = "deploying"  # deploy requested; waiting for the actor (or for the cluster to scale)
    active = "active"  # its actor runs (or is passivated and re-activated on demand)
    inactive = "inactive"  # undeployed: no actor
    error = "error"  # deploy failed or the actor cannot be brought back


# Deployed: the platform keeps (or is getting) an actor for the agent; undeploy and delete stop it.
DEPLOYED = frozenset({AgentStatus.deploying, AgentStatus.active})
# Not deployed: no actor, and none wanted until the next deploy.
UNDEPLOYED = frozenset({AgentStatus.draft, AgentStatus.inactive, AgentStatus.error})

ALLOWED: dict[AgentStatus, frozenset[AgentStatus]] = {
    AgentStatus.draft: frozenset({AgentStatus.deploying}),
    AgentStatus.deploying: frozenset({AgentStatus.active, AgentStatus.error, AgentStatus.inactive}),
    AgentStatus.active: frozenset({AgentStatus.inactive, AgentStatus.error, AgentStatus.deploying}),
    AgentStatus.inactive: frozenset({AgentStatus.deploying, AgentStatus.active}),
    AgentStatus.error: frozenset({AgentStatus.deploying, AgentStatus.inactive}),
}
require_complete(AgentStatus, ALLOWED, DEPLOYED, UNDEPLOYED)

# Other words clients use for agent states (IDLE/RUNNING/… from some, available/busy/offline from others),
# accepted in filters and mapped onto the lifecycle (docs/api.md "Agents", `GET /agents`).
SYNONYMS: dict[str, AgentStatus] = {
    "idle": AgentStatus.active,
    "running": AgentStatus.active,
    "available": AgentStatus.active,
    "busy": AgentStatus.active,
    "paused": AgentStatus.inactive,
    "stopped": AgentStatus.inactive,
    "offline": AgentStatus.inactive,
}


def parse_status(value: str) -> AgentStatus:
    text = value.strip().lower()
    if text in SYNONYMS:
        return SYNONYMS[text]
    try:
        return AgentStatus(text)
    except ValueError as exc:
        allowed = ", ".join([*AgentStatus, *SYNONYMS])
        raise ValueError(f"unknown agent status '{value}' (one of {allowed})") from exc


def can_transition(current: AgentStatus, target: AgentStatus) -> bool:
    return target in ALLOWED[current]


def transition(current: AgentStatus | str, target: AgentStatus | str) -> AgentStatus:
    """The new status, or InvalidTransition (409) naming both ends."""
    return checked(ALLOWED, AgentStatus, "An agent", current, target)
