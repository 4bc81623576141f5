"""Every lifecycle of `schedulers/` over every pair of its states: `transition` accepts exactly the moves of
its `ALLOWED` table, the table is the lifecycle the code lives by, and the named sets split the statuses."""

from __future__ import annotations

import ast
import itertools
import sys
from enum import StrEnum
from pathlib import Path
from types import ModuleType

import pytest

from core.errors import InvalidTransition
from schedulers import (
    agent_lifecycle,
    approval_lifecycle,
    execution_lifecycle,
    task_lifecycle,
    webhook_delivery_lifecycle,
)
from schedulers.approval_lifecycle import ApprovalStatus
from schedulers.execution_lifecycle import ExecutionStatus
from schedulers.lifecycle import require_complete
from schedulers.webhook_delivery_lifecycle import DeliveryStatus

E, A, D = ExecutionStatus, ApprovalStatus, DeliveryStatus

# module, its enum, its named sets that split the enum (each status in exactly one), its final statuses
LIFECYCLES: dict[str, tuple[ModuleType, type[StrEnum], tuple[frozenset, ...], frozenset]] = {
    "agent": (
        agent_lifecycle,
        agent_lifecycle.AgentStatus,
        (agent_lifecycle.DEPLOYED, agent_lifecycle.UNDEPLOYED),
        frozenset(),
    ),
    "task": (
        task_lifecycle,
        task_lifecycle.TaskStatus,
        (task_lifecycle.WAITING, task_lifecycle.ACTIVE, task_lifecycle.TERMINAL),
        task_lifecycle.TERMINAL,
    ),
    "execution": (
        execution_lifecycle,
        ExecutionStatus,
        (execution_lifecycle.ACTIVE, execution_lifecycle.FINISHED),
        execution_lifecycle.FINISHED,
    ),
    "approval": (
        approval_lifecycle,
        ApprovalStatus,
        (approval_lifecycle.WAITING, approval_lifecycle.TERMINAL),
        approval_lifecycle.TERMINAL,
    ),
    "webhook delivery": (
        webhook_delivery_lifecycle,
        DeliveryStatus,
        (webhook_delivery_lifecycle.DUE, webhook_delivery_lifecycle.FINISHED),
        frozenset({DeliveryStatus.delivered}),
    ),
}

PAIRS = [
    pytest.param(name, current, target, id=f"{name}:{current.value}->{target.value}")
    for name, (_, status, _, _) in LIFECYCLES.items()
    for current, target in itertools.product(status, status)
]


@pytest.mark.parametrize(("name", "current", "target"), PAIRS)
def test_transition_accepts_exactly_the_allowed_moves(name: str, current: StrEnum, target: StrEnum) -> None:
    module = LIFECYCLES[name][0]
    if target in module.ALLOWED[current]:
        assert module.transition(current, target) is target
        assert module.transition(current.value, target.value) is target  # as read from a row
    else:
        with pytest.raises(InvalidTransition) as raised:
            module.transition(current, target)
        assert raised.value.status == 409
        assert f"'{current.value}'" in raised.value.message and f"'{target.value}'" in raised.value.message


@pytest.mark.parametrize("name", LIFECYCLES)
def test_the_named_sets_split_the_statuses_and_the_table_lists_each(name: str) -> None:
    module, status, partition, final = LIFECYCLES[name]
    placed = [member for part in partition for member in part]
    assert sorted(placed) == sorted(status)  # every status, each once
    assert set(module.ALLOWED) == set(status)
    assert all(set(targets) <= set(status) for targets in module.ALLOWED.values())
    assert all(not module.ALLOWED[member] for member in final)
    assert all(member.name == member.value for member in status)  # a row's string finds its member in a set


def test_an_incomplete_lifecycle_is_refused_at_import() -> None:
    class Light(StrEnum):
        red = "red"
        green = "green"

    allowed = {Light.red: frozenset({Light.green}), Light.green: frozenset({Light.red})}
    require_complete(Light, allowed, frozenset({Light.red}), frozenset({Light.green}))
    with pytest.raises(RuntimeError, match="ALLOWED"):
        require_complete(Light, {Light.red: frozenset()}, frozenset({Light.red}), frozenset({Light.green}))
    with pytest.raises(RuntimeError, match="named sets"):
        require_complete(Light, allowed, frozenset({Light.red}))
    with pytest.raises(RuntimeError, match="named sets"):
        require_complete(Light, allowed, frozenset({Light.red, Light.green}), frozenset({Light.green}))


# What services/executions.py and services/run_waits.py do: create pending; a run actor claims it (a running
# one too, when its lease ran out); a node waits; the wait's end makes it pending; it ends, or is cancelled.
EXECUTION_MOVES = {
    (E.pending, E.running),
    (E.pending, E.cancelled),
    (E.running, E.running),
    (E.running, E.waiting),
    (E.running, E.completed),
    (E.running, E.failed),
    (E.running, E.timeout),
    (E.running, E.cancelled),
    (E.waiting, E.pending),
    (E.waiting, E.cancelled),
}
# services/approvals.py: a decision or the expiry (an escalation keeps it pending).
APPROVAL_MOVES = {(A.pending, A.approved), (A.pending, A.rejected), (A.pending, A.expired)}
# services/webhooks.py: an attempt of a due delivery; a manual redelivery of a failed or dead one.
DELIVERY_MOVES = {
    (D.pending, D.delivered),
    (D.pending, D.failed),
    (D.pending, D.dead),
    (D.failed, D.delivered),
    (D.failed, D.failed),
    (D.failed, D.dead),
    (D.failed, D.pending),
    (D.dead, D.pending),
}


@pytest.mark.parametrize(
    ("name", "expected"),
    [("execution", EXECUTION_MOVES), ("approval", APPROVAL_MOVES), ("webhook delivery", DELIVERY_MOVES)],
)
def test_the_table_is_the_lifecycle_the_code_lives_by(name: str, expected: set) -> None:
    module = LIFECYCLES[name][0]
    assert {(a, b) for a, targets in module.ALLOWED.items() for b in targets} == expected


def test_a_senders_guarded_update_stays_within_the_delivery_table() -> None:
    """`services.webhooks._record` moves any row `IN DUE` to an attempt's outcome in one statement."""
    for current in webhook_delivery_lifecycle.DUE:
        assert webhook_delivery_lifecycle.ALLOWED[current] >= webhook_delivery_lifecycle.ATTEMPT_OUTCOMES
    assert webhook_delivery_lifecycle.can_transition("dead", DeliveryStatus.pending)
    assert not webhook_delivery_lifecycle.can_transition("delivered", DeliveryStatus.pending)


def test_execution_subsets_lie_within_their_sets() -> None:
    assert execution_lifecycle.FAILED < execution_lifecycle.FINISHED
    assert execution_lifecycle.CLAIMABLE < execution_lifecycle.ACTIVE


def test_execution_status_filter_accepts_any_case_and_lists_the_statuses() -> None:
    assert execution_lifecycle.parse_status(" Running ") is ExecutionStatus.running
    with pytest.raises(ValueError, match="one of pending, running, waiting, completed, failed, cancelled, timeout"):
        execution_lifecycle.parse_status("sleeping")


def test_schedulers_import_only_core_and_the_standard_library() -> None:
    folder = Path(execution_lifecycle.__file__).parent
    allowed = {"core", "schedulers", "__future__", *sys.stdlib_module_names}
    outside = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in allowed:
                    outside.setdefault(path.name, []).append(name)
    assert outside == {}
