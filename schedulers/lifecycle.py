"""What the lifecycle modules of `schedulers/` share: applying a transition of a table, and checking at import
that a table and its named sets account for every status.

Each lifecycle (`agent_lifecycle`, `task_lifecycle`, `execution_lifecycle`, `approval_lifecycle`,
`webhook_delivery_lifecycle`) is a `StrEnum`, named sets that split it, and `ALLOWED`, the moves from each
status. Its `transition` is the one place a status change is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from core.errors import FieldIssue, InvalidTransition

S = TypeVar("S", bound=StrEnum)


def checked(allowed: Mapping[S, frozenset[S]], status: type[S], what: str, current: S | str, target: S | str) -> S:
    """`target` if the table allows `current → target`, else InvalidTransition (409) naming both ends and
    what is allowed from `current`. `what` starts the message: "A task", "An agent" …"""
    current, target = status(current), status(target)
    if target not in allowed[current]:
        raise InvalidTransition(
            f"{what} cannot go from '{current.value}' to '{target.value}'",
            details=[
                FieldIssue("status", f"allowed from '{current.value}': {sorted(s.value for s in allowed[current])}")
            ],
        )
    return target


def require_complete(status: type[S], allowed: Mapping[S, frozenset[S]], *partition: frozenset[S]) -> None:
    """Refuse (at import) a lifecycle whose table lacks a status, or whose named sets do not split the
    statuses exactly (each status in exactly one of them): a status added to the enum must be placed."""
    every = frozenset(status)
    problems = []
    if set(allowed) != every:
        problems.append(f"ALLOWED lists {sorted(allowed)}, not every status {sorted(every)}")
    placed = [member for part in partition for member in part]
    if set(placed) != every or len(placed) != len(every):
        problems.append(f"the named sets {[sorted(part) for part in partition]} do not split {sorted(every)}")
    if problems:
        raise RuntimeError(f"{status.__name__}: " + "; ".join(problems))
