"""The task state machine over every pair of states, and the other spellings of status and priority that clients use."""

from __future__ import annotations

import itertools

import pytest

from core.errors import InvalidTransition
from schedulers.task_lifecycle import ALLOWED, TERMINAL, TaskStatus, parse_priority, parse_status, transition

S = TaskStatus
EXPECTED_MOVES = {
    (S.pending, S.awaiting_approval),
    (S.pending, S.assigned),
    (S.pending, S.in_progress),  # a person takes it by hand
    (S.pending, S.failed),
    (S.pending, S.cancelled),
    (S.awaiting_approval, S.pending),
    (S.awaiting_approval, S.assigned),
    (S.awaiting_approval, S.failed),
    (S.awaiting_approval, S.cancelled),
    (S.assigned, S.in_progress),
    (S.assigned, S.completed),
    (S.assigned, S.failed),
    (S.assigned, S.cancelled),
    (S.assigned, S.pending),
    (S.in_progress, S.completed),
    (S.in_progress, S.failed),
    (S.in_progress, S.cancelled),
    (S.in_progress, S.pending),
    (S.in_progress, S.awaiting_approval),  # a framework agent's tool call waits for a person
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(TaskStatus, TaskStatus)))
def test_every_pair_of_states(current: TaskStatus, target: TaskStatus) -> None:
    if (current, target) in EXPECTED_MOVES:
        assert transition(current, target) is target
    else:
        with pytest.raises(InvalidTransition) as raised:
            transition(current, target)
        assert raised.value.status == 409 and current.value in raised.value.message


def test_the_table_is_the_documented_lifecycle_and_terminal_states_are_final() -> None:
    assert {(a, b) for a, targets in ALLOWED.items() for b in targets} == EXPECTED_MOVES
    assert all(not ALLOWED[state] for state in TERMINAL)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("IN_PROGRESS", S.in_progress),
        ("active", S.in_progress),
        ("Completed", S.completed),
        ("done", S.completed),
        ("canceled", S.cancelled),
        ("error", S.failed),
    ],
)
def test_status_accepts_any_case_and_synonyms(given: str, expected: TaskStatus) -> None:
    assert parse_status(given) is expected
    with pytest.raises(ValueError, match="unknown task status"):
        parse_status("sleeping")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("P0", "P0"),
        ("p2", "P2"),
        ("critical", "P0"),
        ("HIGH", "P1"),
        ("medium", "P2"),
        ("low", "P3"),
        (10, "P0"),
        (9, "P0"),
        (8, "P1"),
        (7, "P1"),
        (6, "P2"),
        (4, "P2"),
        (3, "P3"),
        (1, "P3"),
        ("5", "P2"),
    ],
)
def test_priority_accepts_every_spelling(given, expected: str) -> None:
    assert parse_priority(given) == expected


@pytest.mark.parametrize("given", ["P4", "urgentest", 0, 11, True, ""])
def test_priority_refuses_anything_else(given) -> None:
    with pytest.raises(ValueError):
        parse_priority(given)
