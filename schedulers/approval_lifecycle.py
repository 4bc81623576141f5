"""The approval lifecycle as data: `pending → approved | rejected | expired`.

An approval waits `pending` until a person decides or its deadline passes (`services.approvals`). Escalation
on expiry (`ORCHESTRATOR_APPROVAL_ON_EXPIRY=escalate`) keeps it `pending` with a new deadline: not a move.
Every change goes through `transition`.
"""

from __future__ import annotations

from enum import StrEnum

from schedulers.lifecycle import checked, require_complete


class ApprovalStatus(StrEnum):
    pending = "pending"  # waiting for a decision until `expires_at`
    approved = "approved"  # a person approved it: the gated task is routed, the waiting run resumes
    rejected = "rejected"  # a person rejected it: the gated task fails, the waiting run resumes with it
    expired = "expired"  # nobody decided in time (after the one escalation, if configured)


# Waiting for a person: listed as pending, swept for expiry.
WAITING = frozenset({ApprovalStatus.pending})
# Decided or expired: no move leaves these.
TERMINAL = frozenset({ApprovalStatus.approved, ApprovalStatus.rejected, ApprovalStatus.expired})

ALLOWED: dict[ApprovalStatus, frozenset[ApprovalStatus]] = {
    ApprovalStatus.pending: frozenset({ApprovalStatus.approved, ApprovalStatus.rejected, ApprovalStatus.expired}),
    ApprovalStatus.approved: frozenset(),
    ApprovalStatus.rejected: frozenset(),
    ApprovalStatus.expired: frozenset(),
}
require_complete(ApprovalStatus, ALLOWED, WAITING, TERMINAL)


def transition(current: ApprovalStatus | str, target: ApprovalStatus | str) -> ApprovalStatus:
    """The new status, or InvalidTransition (409) naming both ends."""
    return checked(ALLOWED, ApprovalStatus, "An approval", current, target)
