"""The Ray calls about approvals' actors, behind one function: a thin wrapper around `ray.*`, like every Ray
call of the platform (docs/architecture.md "Layers, and which way calls go")."""

from __future__ import annotations

from functools import cache
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors import agent_handles, gcs
from actors.names import approval_actor_name
from core.errors import DomainError
from core.settings import Settings
from persistence.db import Database
from services import approvals

DECISION_TIMEOUT_S = 60.0
RELEASE_RACE_ATTEMPTS = 3


@cache
def _approval_class() -> Any:
    from actors.approval import ApprovalActor

    return ray.remote(max_restarts=0)(ApprovalActor)


def decide(
    db: Database,
    settings: Settings,
    approval_id: str,
    decider_id: str,
    approve: bool,
    reason: str | None,
    decision_input: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply a decision through the approval's actor, activated for it and released after. Outside a Ray
    cluster (an in-process app: tests, tools) the same decision is applied directly."""
    if not ray.is_initialized():
        with db.transaction() as session:
            outcome = approvals.decide(
                session, approval_id, decider_id, approve, reason, settings, decision_input=decision_input
            )
        outcome.pop("assigned")
        return outcome
    gcs.require("Deciding an approval (its actor is started for the decision)")
    agent_handles.ensure_store(settings)
    for attempt in range(1, RELEASE_RACE_ATTEMPTS + 1):
        handle = (
            _approval_class()
            .options(
                name=approval_actor_name(approval_id),
                namespace=settings.ray.ray_namespace,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
            )
            .remote(approval_id, settings.ray.ray_namespace)
        )
        try:
            return ray.get(
                handle.decide.remote(decider_id, approve, reason, decision_input), timeout=DECISION_TIMEOUT_S
            )
        except RayTaskError as exc:
            if isinstance(exc.cause, DomainError):
                raise exc.cause from None
            raise
        except RayActorError:
            # The previous decision's actor was being released as this one found it: start a new one.
            if attempt == RELEASE_RACE_ATTEMPTS:
                raise
        finally:
            handle.release.remote()  # back to a row: no process while nothing happens
    raise AssertionError("unreachable")
