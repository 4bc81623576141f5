"""The platform's figures for operators (`GET /system/metrics`, the reconciler's Ray gauges): grouped queries
over tasks, runs, steps, approvals and webhook deliveries, across every tenant."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import utcnow
from persistence.models import Approval, Execution, ExecutionStep, Task, WebhookDelivery
from schedulers.approval_lifecycle import ApprovalStatus
from schedulers.task_lifecycle import TERMINAL

STEP_WINDOW = timedelta(hours=1)
PERCENTILES = (0.5, 0.95)


def task_queue(session: Session) -> dict[str, dict[str, int]]:
    """Tasks not finished, by status and by priority within each status."""
    rows = session.execute(
        select(Task.status, Task.priority, func.count())
        .where(Task.status.not_in([status.value for status in TERMINAL]))
        .group_by(Task.status, Task.priority)
    ).all()
    queue: dict[str, dict[str, int]] = {}
    for status, priority, count in rows:
        queue.setdefault(status, {})[priority] = int(count)
    return queue


def runs_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Execution.status, func.count()).group_by(Execution.status)).all()
    return {status: int(count) for status, count in rows}


def approvals_pending(session: Session) -> int:
    waiting = select(func.count()).select_from(Approval).where(Approval.status == ApprovalStatus.pending.value)
    return int(session.scalar(waiting) or 0)


def step_latency(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Duration of the steps that finished in the last hour: count, p50, p95 and max (ms; nearest rank)."""
    since = (now or utcnow()) - STEP_WINDOW
    finished = (ExecutionStep.started_at >= since, ExecutionStep.duration_ms.is_not(None))
    count, longest = session.execute(select(func.count(), func.max(ExecutionStep.duration_ms)).where(*finished)).one()
    figures: dict[str, Any] = {"window_s": int(STEP_WINDOW.total_seconds()), "count": int(count), "max_ms": longest}
    for p in PERCENTILES:
        key = f"p{round(p * 100)}_ms"
        if not count:
            figures[key] = None
        elif session.get_bind().dialect.name == "postgresql":
            figures[key] = session.scalar(
                select(func.percentile_disc(p).within_group(ExecutionStep.duration_ms)).where(*finished)
            )
        else:  # SQLite has no percentile function: the value at the nearest rank
            rank = max(math.ceil(p * count), 1)
            figures[key] = session.scalar(
                select(ExecutionStep.duration_ms)
                .where(*finished)
                .order_by(ExecutionStep.duration_ms)
                .offset(rank - 1)
                .limit(1)
            )
    return figures


def webhook_deliveries(session: Session) -> dict[str, int]:
    """Deliveries by status."""
    rows = session.execute(select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)).all()
    return {status: int(count) for status, count in rows}
