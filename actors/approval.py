"""`ApprovalActor`: one per approval being decided, named `approval:<id>` (docs/architecture.md "The actors").

A pending approval holds no process: it is a row, and its expiry is a timer the reconciler fires from the
database. A decision activates the actor by name; it applies the decision through the store (row lock,
state check, self-approval rule, the waiting task released) and is released again. Two decisions on one
approval meet in the same actor, one after the other.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.exceptions import RayTaskError

from actors.names import STORE_NAME


class ApprovalActor:
    def __init__(self, approval_id: str, namespace: str) -> None:
        self._approval_id = approval_id
        self._store = ray.get_actor(STORE_NAME, namespace=namespace)

    def decide(
        self, decider_id: str, approve: bool, reason: str | None, decision_input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            return ray.get(
                self._store.decide_approval.remote(
                    self._approval_id, decider_id, approve, reason, decision_input=decision_input
                )
            )
        except RayTaskError as exc:  # the store's domain error (409, 403 …), not Ray's wrapper
            raise exc.cause from None

    def release(self) -> None:
        ray.actor.exit_actor()
