"""Tasks' status and priority as data (docs/api.md "Tasks, projects and notifications"): one state machine,
and the other spellings clients use mapped onto it.

`pending → (awaiting_approval) → assigned → in_progress → completed | failed | cancelled`. A task goes
back to `pending` when its agent gives it up (so that it is routed again). A person may also take a pending
task by hand, `pending → in_progress`, without an agent (then the router no longer considers it). A framework
agent's tool call that needs a person's approval moves its task `in_progress → awaiting_approval`, and the
decision gives it back (`pending`, then assigned). Every change goes through `transition`.
"""

from __future__ import annotations

from enum import StrEnum

from schedulers.lifecycle import checked, require_complete


class TaskStatus(StrEnum):
    pending = "pending"  # waiting to be routed
    awaiting_approval = "awaiting_approval"  # P0/P1: a human decides first
    assigned = "assigned"  # an agent has it; not started
    in_progress = "in_progress"  # the agent works on it
    completed = "completed"  # done: its agent (or the workflow run doing it) reported the result
    failed = "failed"  # ended in error: reported so, its approval rejected or expired, or its agent stopped
    cancelled = "cancelled"  # withdrawn before it ended (a status report, or deleted while a run waited on it)


# No agent holds it yet: waiting to be routed, or for a human decision first.
WAITING = frozenset({TaskStatus.pending, TaskStatus.awaiting_approval})
# The filter word `active`: work an agent holds.
ACTIVE = frozenset({TaskStatus.assigned, TaskStatus.in_progress})
# Ended: no move leaves these.
TERMINAL = frozenset({TaskStatus.completed, TaskStatus.failed, TaskStatus.cancelled})

ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.pending: frozenset(
        {
            TaskStatus.awaiting_approval,
            TaskStatus.assigned,
            TaskStatus.in_progress,  # taken by hand (services.tasks.report_status)
            TaskStatus.failed,
            TaskStatus.cancelled,
        }
    ),
    TaskStatus.awaiting_approval: frozenset(
        {TaskStatus.pending, TaskStatus.assigned, TaskStatus.failed, TaskStatus.cancelled}
    ),
    TaskStatus.assigned: frozenset(
        {TaskStatus.in_progress, TaskStatus.completed, TaskStatus.failed, TaskStatus.cancelled, TaskStatus.pending}
    ),
    TaskStatus.in_progress: frozenset(
        {
            TaskStatus.completed,
            TaskStatus.failed,
            TaskStatus.cancelled,
            TaskStatus.pending,
            TaskStatus.awaiting_approval,  # a framework agent's tool call waits for a person
        }
    ),
    TaskStatus.completed: frozenset(),
    TaskStatus.failed: frozenset(),
    TaskStatus.cancelled: frozenset(),
}
require_complete(TaskStatus, ALLOWED, WAITING, ACTIVE, TERMINAL)

# Other spellings that different client generations use, accepted on input and mapped.
SYNONYMS: dict[str, TaskStatus] = {
    "active": TaskStatus.in_progress,
    "running": TaskStatus.in_progress,
    "in-progress": TaskStatus.in_progress,
    "started": TaskStatus.in_progress,
    "done": TaskStatus.completed,
    "complete": TaskStatus.completed,
    "error": TaskStatus.failed,
    "canceled": TaskStatus.cancelled,
    "queued": TaskStatus.pending,
    "open": TaskStatus.pending,
}


def parse_status(value: str) -> TaskStatus:
    text = value.strip().lower()
    if text in SYNONYMS:
        return SYNONYMS[text]
    try:
        return TaskStatus(text)
    except ValueError as exc:
        raise ValueError(f"unknown task status '{value}' (one of {', '.join(TaskStatus)})") from exc


def transition(current: TaskStatus | str, target: TaskStatus | str) -> TaskStatus:
    """The new status, or InvalidTransition (409) naming both ends."""
    return checked(ALLOWED, TaskStatus, "A task", current, target)


PRIORITIES = ("P0", "P1", "P2", "P3")
_PRIORITY_WORDS = {"critical": "P0", "urgent": "P0", "high": "P1", "medium": "P2", "normal": "P2", "low": "P3"}
# The numeric priorities, 1-10 (a number or its digits).
PRIORITY_NUMBERS = range(1, 11)
# Every spelling parse_priority accepts, for the OpenAPI of the parameters it parses.
PRIORITY_WORDS = (*PRIORITIES, *_PRIORITY_WORDS, *(str(number) for number in PRIORITY_NUMBERS))


def parse_priority(value: str | int) -> str:
    """`P0`…`P3`, and what other clients send: the words critical/high/medium/low and the numbers 1–10
    (9–10 → P0, 7–8 → P1, 4–6 → P2, 1–3 → P3)."""
    if isinstance(value, bool):
        raise ValueError("priority is P0-P3, critical/high/medium/low, or 1-10")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        if number not in PRIORITY_NUMBERS:
            raise ValueError("a numeric priority is 1-10")
        return "P0" if number >= 9 else "P1" if number >= 7 else "P2" if number >= 4 else "P3"
    text = str(value).strip()
    if text.upper() in PRIORITIES:
        return text.upper()
    if text.lower() in _PRIORITY_WORDS:
        return _PRIORITY_WORDS[text.lower()]
    raise ValueError("priority is P0-P3, critical/high/medium/low, or 1-10")
