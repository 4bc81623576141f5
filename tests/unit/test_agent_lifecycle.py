from __future__ import annotations

import itertools

import pytest

from core.errors import InvalidTransition
from schedulers.agent_lifecycle import ALLOWED, AgentStatus, can_transition, parse_status, transition

S = AgentStatus
EXPECTED_MOVES = {
    (S.draft, S.deploying),
    (S.deploying, S.active),
    (S.deploying, S.error),
    (S.deploying, S.inactive),
    (S.active, S.inactive),
    (S.active, S.error),
    (S.active, S.deploying),
    (S.inactive, S.deploying),
    (S.inactive, S.active),
    (S.error, S.deploying),
    (S.error, S.inactive),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(AgentStatus, AgentStatus)))
def test_every_pair_of_states(current: AgentStatus, target: AgentStatus) -> None:
    if (current, target) in EXPECTED_MOVES:
        assert can_transition(current, target)
        assert transition(current, target) is target
    else:
        assert not can_transition(current, target)
        with pytest.raises(InvalidTransition) as raised:
            transition(current, target)
        assert raised.value.status == 409 and current.value in raised.value.message


def test_the_table_is_the_documented_lifecycle() -> None:
    assert {(a, b) for a, targets in ALLOWED.items() for b in targets} == EXPECTED_MOVES
    assert set(ALLOWED) == set(AgentStatus)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ACTIVE", S.active),
        ("Draft", S.draft),
        ("IDLE", S.active),
        ("available", S.active),
        ("offline", S.inactive),
        ("STOPPED", S.inactive),
        ("deploying", S.deploying),
    ],
)
def test_status_input_accepts_any_case_and_the_seeds_synonyms(given: str, expected: AgentStatus) -> None:
    assert parse_status(given) is expected


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown agent status"):
        parse_status("sleeping")
