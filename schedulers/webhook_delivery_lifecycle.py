"""The webhook delivery lifecycle as data: `pending → delivered | failed | dead`, `failed` retried.

A delivery is one event to one webhook (`services.webhooks`). A sender claims `DUE` deliveries and records
each attempt's outcome in one conditional update whose guard is `status IN DUE`: every status of `DUE` may
move to each of `ATTEMPT_OUTCOMES`, so that update stays within `ALLOWED` (a unit test holds it to that).
A manual redelivery sends a failed or dead one again from `pending`. Single changes go through `transition`.
"""

from __future__ import annotations

from enum import StrEnum

from schedulers.lifecycle import checked, require_complete


class DeliveryStatus(StrEnum):
    pending = "pending"  # waiting for its first attempt (or redelivered by hand)
    delivered = "delivered"  # the receiver answered 2xx
    failed = "failed"  # an attempt failed; retried at next_attempt_at
    dead = "dead"  # the last attempt failed: kept for inspection and manual redelivery


# A sender may claim these (when `next_attempt_at` is due).
DUE = frozenset({DeliveryStatus.pending, DeliveryStatus.failed})
# No sender tries these again (a dead one can still be redelivered by hand).
FINISHED = frozenset({DeliveryStatus.delivered, DeliveryStatus.dead})
# What an attempt of a due delivery ends in.
ATTEMPT_OUTCOMES = frozenset({DeliveryStatus.delivered, DeliveryStatus.failed, DeliveryStatus.dead})

# An attempt ends a pending/failed delivery; a redelivery revives a failed or dead one.
ALLOWED: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.pending: frozenset({DeliveryStatus.delivered, DeliveryStatus.failed, DeliveryStatus.dead}),
    DeliveryStatus.failed: frozenset(
        {DeliveryStatus.delivered, DeliveryStatus.failed, DeliveryStatus.dead, DeliveryStatus.pending}
    ),
    DeliveryStatus.dead: frozenset({DeliveryStatus.pending}),
    DeliveryStatus.delivered: frozenset(),
}
require_complete(DeliveryStatus, ALLOWED, DUE, FINISHED)


def can_transition(current: DeliveryStatus | str, target: DeliveryStatus | str) -> bool:
    return DeliveryStatus(target) in ALLOWED[DeliveryStatus(current)]


def transition(current: DeliveryStatus | str, target: DeliveryStatus | str) -> DeliveryStatus:
    """The new status, or InvalidTransition (409) naming both ends."""
    return checked(ALLOWED, DeliveryStatus, "A webhook delivery", current, target)
