"""Executions (docs/api.md "Workflows and executions"): starting a run, reading it, cancelling
it, and `RunStore`, the database side of the step loop (`runtime.engine`).

A run is a row first: `POST /workflows/{id}/execute` stores it `pending` with a copy of the graph of the
workflow's current version, then tells the run pool. Every write of the loop is fenced by the run's lease
(`lease_owner`), so only the actor that claimed the run records its steps.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from core.clock import isoformat_z, utcnow
from core.context import correlation_id_var
from core.crypto import SecretBox
from core.errors import Conflict
from core.ids import new_id
from core.settings import Settings
from persistence.db import Database
from persistence.models import Agent, Event, Execution, ExecutionLog, ExecutionStep, Task, Workflow
from persistence.repositories.pages import Page, fetch_page
from persistence.repositories.statements import prepared_insert
from runtime import roles
from runtime.engine import ClaimedRun, Step
from runtime.graph import Graph
from schedulers import admission
from schedulers.execution_lifecycle import CLAIMABLE, FINISHED, ExecutionStatus, transition
from schedulers.task_lifecycle import TaskStatus
from services import approvals, code_bundles, events, owner_settings, ownership, tasks
from services.ports import RouterChannel, TaskSubmitted
from services.principal import Principal
from services.workspaces import Workspace

LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")
# The part of a run's configuration only the platform writes: {"project_id": its workspace, "provider":
# "owner_settings" for the LLM provider of its creator's settings}.
PLATFORM_KEY = "platform"
EVENT_OF_STATUS = {
    ExecutionStatus.completed: "execution.completed",
    ExecutionStatus.failed: "execution.failed",
    ExecutionStatus.timeout: "execution.failed",
    ExecutionStatus.cancelled: "execution.cancelled",
}


# --- the API side -----------------------------------------------------------------------------------


def start(
    session: Session,
    principal: Principal,
    workflow: Workflow,
    *,
    input_data: dict[str, Any],
    options: dict[str, Any],
    trigger: str = "manual",
    environment: str = "development",
    configuration: dict[str, Any] | None = None,
    task_id: str | None = None,
) -> Execution:
    """Store a run of the workflow's current version, `pending`; the caller tells the run pool after commit.
    What the platform itself keeps in a run's configuration (`PLATFORM_KEY`: its workspace, whose provider
    settings it uses) cannot be given by a caller."""
    owner = workflow if ownership.can_write(session, workflow, principal) else None
    configuration = {key: value for key, value in (configuration or {}).items() if key != PLATFORM_KEY}
    return start_graph(
        session,
        graph=workflow.workflow_data,
        owner=(owner.owner_type, owner.owner_id) if owner else ("user", principal.user_id),
        created_by=principal.user_id,
        input_data=input_data,
        trigger=trigger,
        environment=environment,
        configuration=configuration,
        options=options,
        task_id=task_id,
        workflow=workflow,
    )


def start_graph(
    session: Session,
    *,
    graph: dict[str, Any],
    owner: tuple[str, str],
    created_by: str,
    input_data: dict[str, Any],
    trigger: str,
    configuration: dict[str, Any],
    options: dict[str, Any] | None = None,
    task_id: str | None = None,
    environment: str = "production",
    workflow: Workflow | None = None,
) -> Execution:
    """Store a run, `pending`, of a workflow's graph or of one the platform built (a requirement pipeline, a
    workspace run: no `workflow`). The caller tells the run pool after commit."""
    correlation_id = correlation_id_var.get()
    options = isolated_if_shipped(graph, options or {})
    run = Execution(
        workflow_id=workflow.id if workflow else None,
        workflow_version=workflow.version if workflow else "-",
        agent_id=workflow.agent_id if workflow else None,
        task_id=task_id,
        graph=graph,
        status=ExecutionStatus.pending.value,
        input=input_data,
        state={},
        frontier=[],
        options=options,
        configuration=configuration,
        trigger=trigger,
        environment=environment,
        correlation_id=None if correlation_id == "-" else correlation_id,
        owner_type=owner[0],
        owner_id=owner[1],
        created_by=created_by,
    )
    session.add(run)
    session.flush()
    return run


def run_of_task(session: Session, task_id: str) -> str | None:
    """The run an agent's workflow started on the task, if any."""
    return session.scalar(select(Execution.id).where(Execution.task_id == task_id).limit(1))


def start_for_task(session: Session, task: Task, workflow: Workflow) -> Execution:
    """A hosted agent with an active workflow runs it on each task routed to it: the task's payload is the
    run's input, and the run's end completes (or fails) the task."""
    run = Execution(
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        agent_id=workflow.agent_id,
        task_id=task.id,
        graph=workflow.workflow_data,
        status=ExecutionStatus.pending.value,
        input=dict(task.payload or {}),
        state={},
        frontier=[],
        options=isolated_if_shipped(workflow.workflow_data, {}),
        trigger="task",
        environment="production",
        correlation_id=task.correlation_id,
        owner_type=task.owner_type,
        owner_id=task.owner_id,
        created_by=task.created_by,
    )
    session.add(run)
    session.flush()
    return run


def get(session: Session, principal: Principal, execution_id: str) -> Execution:
    return ownership.get_visible(session, Execution, execution_id, principal)


def list_executions(
    session: Session,
    principal: Principal,
    *,
    page: int,
    limit: int,
    workflow_id: str | None = None,
    agent_id: str | None = None,
    status: str | None = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    trigger: str | None = None,
    environment: str | None = None,
) -> Page[Execution]:
    query = select(Execution).where(ownership.visible_to(Execution, principal))
    if workflow_id:
        query = query.where(Execution.workflow_id == workflow_id)
    if agent_id:
        query = query.where(Execution.agent_id == agent_id)
    if status:
        query = query.where(Execution.status == status)
    if start_date:
        query = query.where(Execution.created_at >= start_date)
    if end_date:
        query = query.where(Execution.created_at < end_date)
    if trigger:
        query = query.where(Execution.trigger == trigger)
    if environment:
        query = query.where(Execution.environment == environment)
    return fetch_page(session, query.order_by(Execution.created_at.desc(), Execution.id.desc()), page=page, limit=limit)


def steps(session: Session, execution_id: str, *, after_seq: int = 0) -> list[ExecutionStep]:
    query = select(ExecutionStep).where(ExecutionStep.execution_id == execution_id, ExecutionStep.seq > after_seq)
    return list(session.scalars(query.order_by(ExecutionStep.seq)))


def logs(
    session: Session, execution_id: str, *, level: str | None, limit: int, offset: int, with_total: bool = True
) -> tuple[list[ExecutionLog], int | None]:
    query = select(ExecutionLog).where(ExecutionLog.execution_id == execution_id)
    if level:
        query = query.where(ExecutionLog.level.in_(LEVELS[LEVELS.index(level) :]))  # this level and above
    total = (session.scalar(select(func.count()).select_from(query.subquery())) or 0) if with_total else None
    rows = session.scalars(query.order_by(ExecutionLog.created_at, ExecutionLog.id).limit(limit).offset(offset))
    return list(rows), total


def output_since(session: Session, execution_id: str, offset: int, limit: int = 1000) -> list[dict[str, Any]]:
    """The run's output pieces (`execution.output` events) after the first `offset`, in order."""
    rows = session.execute(
        select(Event.data, Event.created_at)
        .where(Event.subject_id == execution_id, Event.event_type == "execution.output")
        .order_by(Event.created_at, Event.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return [
        {
            "execution_id": execution_id,
            "node_id": data.get("node_id"),
            "output": data.get("text", ""),
            "timestamp": isoformat_z(created_at),
        }
        for data, created_at in rows
    ]


def request_cancel(session: Session, principal: Principal, execution_id: str) -> Execution:
    """Cancel a run: one that is pending or waiting ends at once; a running one is told (its actor stops at
    its next check, within moments)."""
    run = ownership.get_writable(session, Execution, execution_id, principal)
    run = session.get(Execution, run.id, with_for_update=True, populate_existing=True)
    assert run is not None
    if run.status in FINISHED:
        raise Conflict(f"This execution is already {run.status}")
    run.cancel_requested = True
    if run.status in (ExecutionStatus.pending, ExecutionStatus.waiting):  # no actor holds it: it ends now
        _end(session, run, ExecutionStatus.cancelled, error="cancelled", output=None)
    session.flush()
    return run


def resumable(session: Session, lease_s: float) -> list[tuple[str, dict[str, float]]]:
    """Runs that should be running and are not (the reconciler's pass), with the resources each asks for:
    pending ones nobody claimed for a while, and running ones whose lease ran out (their actor, or the
    whole cluster, went away)."""
    now = utcnow()
    stale = now - timedelta(seconds=max(lease_s / 3, 2.0))
    query = (
        select(Execution.id, Execution.options, Agent.resource_limits)
        .outerjoin(Agent, Agent.id == Execution.agent_id)
        .where(
            or_(
                (Execution.status == ExecutionStatus.pending.value)
                & (Execution.updated_at < stale)
                & (or_(Execution.lease_until.is_(None), Execution.lease_until < now)),
                (Execution.status == ExecutionStatus.running.value) & (Execution.lease_until < now),
            )
        )
        .order_by(Execution.updated_at)
        .limit(500)
    )
    return [(run_id, resources_of(options, limits)) for run_id, options, limits in session.execute(query).all()]


def request_of(session: Session, execution_id: str) -> dict[str, float]:
    run = session.get(Execution, execution_id)
    agent = session.get(Agent, run.agent_id) if run is not None and run.agent_id else None
    return resources_of(run.options if run is not None else None, agent.resource_limits if agent else None)


def resources_of(options: dict[str, Any] | None, agent_limits: dict[str, Any] | None) -> dict[str, float]:
    """A run's Ray request: its execution options' resources, else its agent's limits; a run of shipped code
    asks for a process of its own (`admission.ISOLATED`)."""
    request = admission.ray_resources((options or {}).get("resources") or agent_limits or {})
    if (options or {}).get("isolated"):
        request[admission.ISOLATED] = 1.0
    return request


def isolated_if_shipped(graph: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """A graph that runs shipped code runs in a process of its own: no other run, and no other owner's code,
    shares the process that loaded it."""
    return {**options, "isolated": True} if code_bundles.uses_bundles(graph) else options


def _end(
    session: Session, run: Execution, status: ExecutionStatus, *, error: str | None, output: dict[str, Any] | None
) -> None:
    now = utcnow()
    run.status, run.error, run.output = transition(run.status, status).value, error, output
    run.completed_at = now
    run.lease_owner, run.lease_until = None, None
    if run.started_at is not None:
        run.duration_ms = int((now - run.started_at).total_seconds() * 1000)
    if status == ExecutionStatus.completed:
        run.progress = 1.0
    events.emit(session, EVENT_OF_STATUS[status], _summary(run), source="executions", owner=run, subject_id=run.id)
    if run.task_id:
        _finish_task(session, run)
    if run.agent_id:
        _count_for_agent(session, run)  # last: the agent's row stays locked from here to the commit


def _finish_task(session: Session, run: Execution) -> None:
    """The task a hosted agent ran through this workflow ends with the run."""
    task = tasks.lock_task(session, run.task_id)
    if task is None or task.status != TaskStatus.in_progress.value:
        return
    if run.status == ExecutionStatus.completed:
        tasks.set_status(session, task, TaskStatus.completed, result=tasks.json_safe(run.output))
    else:
        tasks.set_status(session, task, TaskStatus.failed, error=f"workflow run {run.id} {run.status}: {run.error}")


def _count_for_agent(session: Session, run: Execution) -> None:
    """The agent's execution counters: totals, successes, the running mean duration. One statement, not a
    locked read then a write: every run of the agent ends here, and the row's lock is held only from this
    statement to the commit."""
    duration = float(run.duration_ms or 0)
    session.flush()  # the run's own writes first, so that nothing but the commit follows the lock
    session.execute(
        update(Agent)
        .where(Agent.id == run.agent_id)
        .values(
            avg_execution_time=(func.coalesce(Agent.avg_execution_time, 0.0) * Agent.total_executions + duration)
            / (Agent.total_executions + 1),
            total_executions=Agent.total_executions + 1,
            successful_executions=Agent.successful_executions + (1 if run.status == ExecutionStatus.completed else 0),
            last_executed_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )


def _summary(run: Execution) -> dict[str, Any]:
    return {
        "execution_id": run.id,
        "workflow_id": run.workflow_id,
        "agent_id": run.agent_id,
        "status": run.status,
        "progress": run.progress,
        "current_step": run.current_step,
        "error": run.error,
    }


# --- the step loop's side ----------------------------------------------------------------------------


class DatabaseRunStore:
    """`runtime.engine.RunStore` on the platform's database. Every write checks the lease first."""

    def __init__(
        self, db: Database, settings: Settings, router: RouterChannel | None = None, *, load_code: bool = False
    ) -> None:
        """`router`: told of the tasks a run waits on (None: nobody is, as in a process without a cluster;
        the router's periodic re-read finds them). `load_code`: this process may load shipped code (a run
        actor of a single run; never a pooled one or the API)."""
        self.db = db
        self.settings = settings
        self.router = router
        self.load_code = load_code
        self.lease = timedelta(seconds=settings.workflows.run_lease_s)

    def claim(self, execution_id: str, token: str, takeover: str | None) -> ClaimedRun | None:
        now = utcnow()
        with self.db.transaction() as session:
            run = session.get(Execution, execution_id, with_for_update=True, populate_existing=True)
            if run is None or run.status not in CLAIMABLE:
                return None
            lease_free = run.lease_owner is None or run.lease_until is None or run.lease_until < now
            if not lease_free and run.lease_owner != takeover:
                return None
            if run.cancel_requested:
                _end(session, run, ExecutionStatus.cancelled, error="cancelled", output=None)
                return None
            resumed = run.status == ExecutionStatus.running
            fresh = run.started_at is None  # its first claim: no step recorded yet
            run.lease_owner, run.lease_until = token, now + self.lease
            run.actor_name = token.rsplit("#", 1)[0]
            outcome = None
            if run.started_at is None:
                run.status, run.started_at = transition(run.status, ExecutionStatus.running).value, now
                run.state = dict(run.input)
                run.frontier = Graph.parse(run.graph).starts()
                events.emit(
                    session, "execution.started", _summary(run), source="executions", owner=run, subject_id=run.id
                )
            elif run.waiting_on and run.waiting_on.get("outcome"):
                outcome = {**run.waiting_on["outcome"], "node_id": run.waiting_on["node_id"]}
                run.status, run.waiting_on = transition(run.status, ExecutionStatus.running).value, None
                session.add(
                    ExecutionLog(
                        execution_id=run.id,
                        level="INFO",
                        node_id=outcome["node_id"],
                        message=f"resumed: {outcome['kind']} {outcome['status']}",
                    )
                )
            else:
                run.status = transition(run.status, ExecutionStatus.running).value
            if resumed:
                run.resumes += 1
                session.add(
                    ExecutionLog(
                        execution_id=run.id,
                        level="WARN",
                        message=f"resumed from the last recorded step ({run.steps_done} done) by {run.actor_name}",
                    )
                )
            events.emit(session, "execution.updated", _summary(run), source="executions", owner=run, subject_id=run.id)
            # A run starting now has no steps yet; a resumed one reads what its steps say.
            failures, visits, next_seq = (0, {}, 1) if fresh else self._history(session, run)
            llm = {}
            if run.agent_id:
                agent = session.get(Agent, run.agent_id)
                llm = dict((agent.configuration or {}).get("llm") or {}) if agent is not None else {}
            platform = (run.configuration or {}).get(PLATFORM_KEY) or {}
            if not run.agent_id and platform.get("provider") == "owner_settings":
                llm = owner_settings.provider_for(
                    session,
                    SecretBox.from_settings(self.settings),
                    user_id=run.created_by,
                    owner=(run.owner_type, run.owner_id),
                    platform={},
                )
            project_id = platform.get("project_id")
            return ClaimedRun(
                id=run.id,
                graph=run.graph,
                state=dict(run.state),
                frontier=list(run.frontier),
                steps_done=run.steps_done,
                options=dict(run.options),
                correlation_id=run.correlation_id,
                started_at=run.started_at.timestamp(),
                head_failures=failures,
                visits=visits,
                next_seq=next_seq,
                outcome=outcome,
                llm=llm,
                workspace=Workspace.of(self.settings, project_id) if project_id else None,
                task_id=run.task_id,
                load_code=self._code_loader(run) if self.load_code and code_bundles.uses_bundles(run.graph) else None,
                tokens_used=run.tokens_used or 0,
                cost=float(run.cost or 0.0),
            )

    def _code_loader(self, run: Execution) -> Any:
        """Shipped code's functions for this run, each bundle read once and unpickled in this process only."""
        owner, created_by, loaded = (run.owner_type, run.owner_id), run.created_by, {}

        def load(sha256: str) -> dict[str, Any]:
            if sha256 not in loaded:
                import cloudpickle  # only run actors of shipped code import it

                with self.db.session() as session:
                    data, python = code_bundles.load(session, owner, created_by, sha256)
                here = f"{sys.version_info.major}.{sys.version_info.minor}"
                if python != here:
                    raise RuntimeError(f"the code was shipped from Python {python}; this cluster runs {here}")
                loaded[sha256] = dict(cloudpickle.loads(data)["functions"])
            return loaded[sha256]

        return load

    def _history(self, session: Session, run: Execution) -> tuple[int, dict[str, int], int]:
        rows = session.execute(
            select(ExecutionStep.node_id, ExecutionStep.status, ExecutionStep.seq)
            .where(ExecutionStep.execution_id == run.id)
            .order_by(ExecutionStep.seq)
        ).all()
        visits: dict[str, int] = {}
        failures = last_seq = 0
        for node_id, status, seq in rows:
            last_seq = seq
            if status == "completed":
                visits[node_id] = visits.get(node_id, 0) + 1
                failures = 0
            elif run.frontier and node_id == run.frontier[0]:
                failures += 1
        return failures, visits, last_seq + 1

    def _fenced(self, session: Session, run_id: str, token: str) -> Execution | None:
        run = session.get(Execution, run_id, with_for_update=True, populate_existing=True)
        if run is None or run.lease_owner != token or run.status != ExecutionStatus.running:
            return None
        return run

    def _write_logs(self, session: Session, run_id: str, logs: list[dict[str, Any]]) -> None:
        for entry in logs:
            session.add(
                ExecutionLog(
                    execution_id=run_id,
                    level=entry["level"],
                    message=entry["message"],
                    node_id=entry.get("node_id"),
                    meta=tasks.json_safe(entry.get("metadata")) or {},
                    created_at=datetime.fromtimestamp(entry["at"], UTC),
                )
            )

    def _write_unrecorded(self, session: Session, claimed: ClaimedRun, first_seq: int | None = None) -> None:
        """The pure nodes' steps done since the run's last write (`ClaimedRun.unrecorded`), in order, before
        the write that carries them; `first_seq`: their numbers were reserved already."""
        for index, step in enumerate(claimed.unrecorded):
            self._step(session, claimed, step, seq=None if first_seq is None else first_seq + index)
        claimed.unrecorded = []

    def _step(self, session: Session, claimed: ClaimedRun, step: Step, seq: int | None = None) -> None:
        if seq is None:
            seq, claimed.next_seq = claimed.next_seq, claimed.next_seq + 1
        session.execute(
            _INSERT_STEP,
            {
                "id": new_id(),
                "execution_id": claimed.id,
                "seq": seq,
                "node_id": step.node_id,
                "node_type": step.node_type,
                "attempt": step.attempt,
                "status": step.status,
                "input": tasks.json_safe(step.input),
                "output": tasks.json_safe(step.output),
                "error": step.error,
                "idempotency_key": step.idempotency_key,
                "started_at": datetime.fromtimestamp(step.started_at, UTC),
                "completed_at": utcnow(),
                "duration_ms": step.duration_ms,
            },
        )

    def checkpoint(
        self,
        claimed: ClaimedRun,
        token: str,
        step: Step,
        *,
        progress: float,
        current_step: str | None,
        logs: list[dict[str, Any]],
        usage: tuple[int, float],
        resources: dict[str, Any],
    ) -> str:
        written = self._checkpoint(
            claimed,
            token,
            step,
            progress=progress,
            current_step=current_step,
            logs=logs,
            usage=usage,
            resources=resources,
        )
        if written != "lost" and claimed.task_id and step.node_type == "role":
            self._stage_reached(claimed.task_id, current_step, progress, claimed.state)
        return written

    def _stage_reached(self, task_id: str, current_step: str | None, progress: float, state: dict[str, Any]) -> None:
        """A requirement pipeline's stage ended: its task shows the next stage and the progress
        (`task.updated`: the `task_update` of requirement clients)."""
        with self.db.transaction() as session:
            task = tasks.lock_task(session, task_id)
            if task is None or task.status != TaskStatus.in_progress.value:
                return
            task.progress = round(progress, 4)
            stage = roles.STAGES.get(current_step or "", "integration")
            results = {name: state[name] for name in roles.STAGES.values() if state.get(name) is not None}
            pipeline = {**(task.meta or {}).get("pipeline", {}), "stage": stage, "results": tasks.json_safe(results)}
            task.meta = {**(task.meta or {}), "pipeline": pipeline}
            events.emit(
                session,
                "task.updated",
                {**tasks.summary(task), "stage": stage, "progress": round(progress * 100)},
                source="executions",
                owner=task,
                subject_id=task.id,
            )

    def _checkpoint(
        self,
        claimed: ClaimedRun,
        token: str,
        step: Step,
        *,
        progress: float,
        current_step: str | None,
        logs: list[dict[str, Any]],
        usage: tuple[int, float],
        resources: dict[str, Any],
    ) -> str:
        """Record a completed step: "ok", "cancelled" (recorded; the run must stop) or "lost" (not ours).
        One transaction of three prepared statements: the run's row (fenced by the lease; not loaded, its
        graph can be large), the step, the event."""
        now = utcnow()
        values = {
            "run_id": claimed.id,
            "token": token,
            "state": tasks.json_safe(claimed.state) or {},
            "frontier": list(claimed.frontier),
            "steps_done": claimed.steps_done,
            "progress": progress,
            "current_step": current_step,
            "tokens_used": usage[0],
            "cost": round(usage[1], 6),
            "resource_usage": resources,
            "lease_until": now + self.lease,
            "now": now,
        }
        if self.db.engine.dialect.name == "postgresql":
            return self._checkpoint_postgres(claimed, step, values, logs)
        with self.db.transaction() as session:
            fenced = session.execute(_CHECKPOINT, values).first()
            if fenced is None:
                return "lost"
            self._write_unrecorded(session, claimed)
            self._step(session, claimed, step)
            self._write_logs(session, claimed.id, logs)
            events.emit_now(
                session,
                "execution.updated",
                {
                    "execution_id": claimed.id,
                    "workflow_id": fenced.workflow_id,
                    "agent_id": fenced.agent_id,
                    "status": ExecutionStatus.running.value,
                    "progress": progress,
                    "current_step": current_step,
                    "step": step.node_id,
                    "error": None,
                },
                source="executions",
                owner=fenced,
                subject_id=claimed.id,
                correlation_id=claimed.correlation_id,
            )
            return "cancelled" if fenced.cancel_requested else "ok"

    def _checkpoint_postgres(
        self, claimed: ClaimedRun, step: Step, values: dict[str, Any], logs: list[dict[str, Any]]
    ) -> str:
        """The same three writes as one statement (a round trip, not three): the step and the event are
        inserted only if the fenced update of the run matched; the pure nodes' steps before it, numbered first."""
        first_seq = claimed.next_seq
        seq = first_seq + len(claimed.unrecorded)
        claimed.next_seq = seq + 1
        correlation_id = claimed.correlation_id
        event = {
            "execution_id": claimed.id,
            "status": ExecutionStatus.running.value,
            "progress": values["progress"],
            "current_step": values["current_step"],
            "step": step.node_id,
            "error": None,
        }
        with self.db.transaction() as session:
            fenced = session.execute(
                _PG_CHECKPOINT,
                {
                    **values,
                    "step_id": new_id(),
                    "seq": seq,
                    "node_id": step.node_id,
                    "node_type": step.node_type,
                    "attempt": step.attempt,
                    "step_status": step.status,
                    "input": tasks.json_safe(step.input),
                    "output": tasks.json_safe(step.output),
                    "error": step.error,
                    "key": step.idempotency_key,
                    "started_at": datetime.fromtimestamp(step.started_at, UTC),
                    "duration_ms": step.duration_ms,
                    "event_id": new_id(),
                    "event": event,
                    "correlation_id": correlation_id,
                },
            ).first()
            if fenced is None:
                return "lost"
            self._write_unrecorded(session, claimed, first_seq)
            self._write_logs(session, claimed.id, logs)
            return "cancelled" if fenced.cancel_requested else "ok"

    def record_failure(self, claimed: ClaimedRun, token: str, step: Step, logs: list[dict[str, Any]]) -> str:
        with self.db.transaction() as session:
            run = self._fenced(session, claimed.id, token)
            if run is None:
                return "lost"
            self._write_unrecorded(session, claimed)
            self._step(session, claimed, step)
            run.steps_done = claimed.steps_done
            run.lease_until = utcnow() + self.lease
            self._write_logs(session, run.id, logs)
            return "cancelled" if run.cancel_requested else "ok"

    def wait(
        self, claimed: ClaimedRun, token: str, node_id: str, request: dict[str, Any], logs: list[dict[str, Any]]
    ) -> bool:
        with self.db.transaction() as session:
            run = self._fenced(session, claimed.id, token)
            if run is None:
                return False
            self._write_unrecorded(session, claimed)
            if request["kind"] == "approval":
                waited = approvals.request_for_execution(
                    session, run, node_id, request, self.settings, state=claimed.state
                ).id
            else:
                task = Task(
                    title=request["title"][:300],
                    type=request["type"],
                    priority=request["priority"],
                    status=TaskStatus.pending.value,
                    payload=tasks.json_safe(request["payload"]) or {},
                    meta={"execution_id": run.id, "node_id": node_id},
                    owner_type=run.owner_type,
                    owner_id=run.owner_id,
                    created_by=run.created_by,
                    correlation_id=run.correlation_id,
                    source=f"execution:{run.id}",
                )
                session.add(task)
                session.flush()
                events.emit(
                    session, "task.created", tasks.summary(task), source="executions", owner=task, subject_id=task.id
                )
                waited = task.id
            run.status = transition(run.status, ExecutionStatus.waiting).value
            run.waiting_on = {"kind": request["kind"], "id": waited, "node_id": node_id}
            run.state, run.frontier = tasks.json_safe(claimed.state) or {}, list(claimed.frontier)
            run.steps_done = claimed.steps_done
            run.current_step = node_id
            run.lease_owner, run.lease_until = None, None
            self._write_logs(session, run.id, logs)
            events.emit(
                session,
                "execution.updated",
                {**_summary(run), "waiting_on": run.waiting_on},
                source="executions",
                owner=run,
                subject_id=run.id,
            )
        if request["kind"] == "task" and self.router is not None:
            self.router.send(TaskSubmitted(waited))
        return True

    def finish(
        self,
        claimed: ClaimedRun,
        token: str,
        status: ExecutionStatus,
        *,
        output: dict[str, Any] | None,
        error: str | None,
        logs: list[dict[str, Any]],
        usage: tuple[int, float],
        resources: dict[str, Any],
    ) -> bool:
        with self.db.transaction() as session:
            run = self._fenced(session, claimed.id, token)
            if run is None:
                return False
            self._write_unrecorded(session, claimed)
            if run.cancel_requested and status != ExecutionStatus.completed:
                status, error = ExecutionStatus.cancelled, error or "cancelled"
            run.state = tasks.json_safe(claimed.state) or {}
            run.frontier, run.steps_done = list(claimed.frontier), claimed.steps_done
            run.tokens_used, run.cost, run.resource_usage = usage[0], round(usage[1], 6), resources
            self._write_logs(session, run.id, logs)
            _end(session, run, ExecutionStatus(status), error=error, output=tasks.json_safe(output))
            return True

    def renew(self, execution_id: str, token: str) -> bool:
        with self.db.transaction() as session:
            result = session.execute(
                update(Execution)
                .where(
                    Execution.id == execution_id,
                    Execution.lease_owner == token,
                    Execution.status == ExecutionStatus.running.value,
                    Execution.cancel_requested.is_(False),
                )
                .values(lease_until=utcnow() + self.lease)
            )
            return result.rowcount == 1

    def emit_output(self, execution_id: str, node_id: str, text: str) -> None:
        with self.db.transaction() as session:
            run = session.get(Execution, execution_id)
            if run is not None:
                events.emit(
                    session,
                    "execution.output",
                    {"execution_id": execution_id, "node_id": node_id, "text": text},
                    source="executions",
                    owner=run,
                    subject_id=execution_id,
                )


def wait_for_terminal(db: Database, execution_id: str, timeout_s: float) -> str | None:
    """Poll a run's status until it ends or `timeout_s` passes (cancel's short wait for the actor)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with db.session() as session:
            status = session.scalar(select(Execution.status).where(Execution.id == execution_id))
        if status in FINISHED or time.monotonic() >= deadline:
            return status
        time.sleep(0.1)


# The step loop's statements, built once (their compiled form is cached; building them per step was a
# measurable share of a step's cost).
_CHECKPOINT = (
    update(Execution)
    .where(
        Execution.id == bindparam("run_id"),
        Execution.lease_owner == bindparam("token"),
        Execution.status == ExecutionStatus.running.value,
    )
    .values(
        state=bindparam("state"),
        frontier=bindparam("frontier"),
        steps_done=bindparam("steps_done"),
        progress=bindparam("progress"),
        current_step=bindparam("current_step"),
        tokens_used=bindparam("tokens_used"),
        cost=bindparam("cost"),
        resource_usage=bindparam("resource_usage"),
        lease_until=bindparam("lease_until"),
        updated_at=bindparam("now"),
    )
    .returning(
        Execution.cancel_requested, Execution.owner_type, Execution.owner_id, Execution.workflow_id, Execution.agent_id
    )
)
_INSERT_STEP = prepared_insert(
    ExecutionStep,
    "id",
    "execution_id",
    "seq",
    "node_id",
    "node_type",
    "attempt",
    "status",
    "input",
    "output",
    "error",
    "idempotency_key",
    "started_at",
    "completed_at",
    "duration_ms",
)
_PG_CHECKPOINT = text("""
WITH run AS (
    UPDATE executions SET state = :state, frontier = :frontier, steps_done = :steps_done, progress = :progress,
        current_step = :current_step, tokens_used = :tokens_used, cost = :cost, resource_usage = :resource_usage,
        lease_until = :lease_until, updated_at = :now
    WHERE id = :run_id AND lease_owner = :token AND status = :running
    RETURNING cancel_requested, owner_type, owner_id, workflow_id, agent_id
), step AS (
    INSERT INTO execution_steps (id, execution_id, seq, node_id, node_type, attempt, status, input, output, error,
                                 idempotency_key, started_at, completed_at, duration_ms)
    SELECT :step_id, :run_id, :seq, :node_id, :node_type, :attempt, :step_status, :input, :output, :error, :key,
           :started_at, :now, :duration_ms FROM run
), event AS (
    INSERT INTO events (id, event_type, source, data, owner_type, owner_id, subject_id, correlation_id, created_at)
    SELECT :event_id, 'execution.updated', 'executions',
           :event || jsonb_build_object('workflow_id', run.workflow_id, 'agent_id', run.agent_id),
           run.owner_type, run.owner_id, :run_id, :correlation_id, :now FROM run
)
SELECT cancel_requested FROM run
""").bindparams(
    *(bindparam(name, type_=JSONB) for name in ("state", "frontier", "resource_usage", "input", "output", "event")),
    *(bindparam(name, type_=DateTime(timezone=True)) for name in ("lease_until", "now", "started_at")),
    running=ExecutionStatus.running.value,
)
