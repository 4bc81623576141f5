"""The step loop of one run: claim the run, take the next node of its frontier, run it, record the step
with the new state and frontier in one transaction, and only then move on.

Durability comes from that order. A run resumed on a new actor (after a crash, a kill, a cluster restart)
starts from the last recorded step; a node that was running when its process died is run again with the
same attempt number, so its idempotency key (`execution_id:node_id:attempt`) is the same and its side
effect can be de-duplicated. Only the holder of the run's lease writes: a second actor given the same run
cannot claim it, and an actor that lost its lease stops at its next write.

The store (`RunStore`) is the database side (`services.executions`); `RunEnvironment` is what the hosting
actor provides (allowed code, the LLM provider, the map runner).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime import templates
from runtime.expressions import ExpressionError
from runtime.graph import Graph
from runtime.nodes import NODE_TYPES, FrameworkLoader, NodeContext, NodeFailed, NodeResult, WorkspaceAccess
from schedulers.execution_lifecycle import ExecutionStatus

log = logging.getLogger("orchestrator.runs")

POLL_S = 0.05
RENEW_EVERY_S = 2.0
MAX_BACKOFF_S = 30.0
OUTPUT_FLUSH_S = 0.3


class LostLease(Exception):
    """Another actor holds the run now, or it was cancelled or finished meanwhile: stop without writing."""


@dataclass(slots=True)
class ClaimedRun:
    id: str
    graph: dict[str, Any]
    state: dict[str, Any]
    frontier: list[str]
    steps_done: int
    options: dict[str, Any]
    correlation_id: str | None
    started_at: float | None  # epoch seconds
    # Failed attempts of the frontier head since it last completed; completed steps of each node (visits).
    head_failures: int = 0
    visits: dict[str, int] = field(default_factory=dict)
    next_seq: int = 1  # the sequence number of the next step row
    # A resumed wait: {"node_id", "status", …} of the approval's decision or the task's outcome.
    outcome: dict[str, Any] | None = None
    llm: dict[str, Any] = field(default_factory=dict)
    # The project workspace of a run that has one (requirement pipelines, workspace runs): NodeContext.workspace.
    workspace: WorkspaceAccess | None = None
    task_id: str | None = None  # the task the run works (it ends with the run)
    # Shipped code's functions by bundle SHA-256 (NodeContext.load_code); None: this run names no bundle.
    load_code: Callable[[str], Mapping[str, Callable[..., Any]]] | None = None
    # Tokens and cost the run had used before this claim (a resumed run adds to them).
    tokens_used: int = 0
    cost: float = 0.0
    # Steps of pure nodes (PURE_NODES) done but not yet written: the store writes them, in order and in the
    # same transaction, with the run's next write.
    unrecorded: list[Step] = field(default_factory=list)


@dataclass(slots=True)
class Step:
    node_id: str
    node_type: str
    attempt: int
    status: str  # completed | failed
    input: dict[str, Any] | None
    output: dict[str, Any] | None
    error: str | None
    idempotency_key: str
    started_at: float
    duration_ms: float


# Nodes with no effect beyond the run's state, computed from the state alone. One that ends the run has its step
# written by the run's end, in the same transaction, instead of a transaction of its own (a crash before it
# runs the node again, with the same result): a 1-step run writes four times, not five. A pure node with
# successors is still written on its own, so that watchers see the run reach the next node when it does.
PURE_NODES = frozenset({"input", "output"})


class RunStore(Protocol):
    """The run's durable side. Every write first writes `run.unrecorded` (and empties it), after its fence."""

    def claim(self, execution_id: str, token: str, takeover: str | None) -> ClaimedRun | None: ...

    def checkpoint(
        self,
        run: ClaimedRun,
        token: str,
        step: Step,
        *,
        progress: float,
        current_step: str | None,
        logs: list[dict[str, Any]],
        usage: tuple[int, float],
        resources: dict[str, Any],
    ) -> str: ...  # "ok", "cancelled" (recorded, and the run must stop) or "lost" (another actor holds it)

    def record_failure(self, run: ClaimedRun, token: str, step: Step, logs: list[dict[str, Any]]) -> str: ...

    def wait(
        self, run: ClaimedRun, token: str, node_id: str, request: dict[str, Any], logs: list[dict[str, Any]]
    ) -> bool: ...

    def finish(
        self,
        run: ClaimedRun,
        token: str,
        status: ExecutionStatus,
        *,
        output: dict[str, Any] | None,
        error: str | None,
        logs: list[dict[str, Any]],
        usage: tuple[int, float],
        resources: dict[str, Any],
    ) -> bool: ...

    def renew(self, execution_id: str, token: str) -> bool: ...

    def emit_output(self, execution_id: str, node_id: str, text: str) -> None: ...


@dataclass(slots=True)
class RunEnvironment:
    code_modules: tuple[str, ...] = ()
    llm: dict[str, Any] = field(default_factory=dict)
    http_allowed: tuple[str, ...] = ()
    map_runner: Callable[[str, list[Any], int], list[Any]] | None = None
    default_retry_count: int = 0
    # Called with each recorded step's duration (ms) and status: the run actor's latency histogram.
    observe_step: Callable[[float, str], None] | None = None
    # Agent frameworks' runtimes for `langgraph` nodes (runtime.nodes.FrameworkLoader); None: such nodes fail.
    load_framework: FrameworkLoader | None = None


@dataclass(slots=True)
class Outcome:
    status: str  # an ExecutionStatus (completed | failed | cancelled | timeout | waiting), lost or not_claimed
    leaked_thread: bool = False  # a node overran its timeout or was cancelled mid-way: recycle the process


class _Usage:
    def __init__(self, tokens: int = 0, cost: float = 0.0) -> None:
        self.tokens, self.cost = tokens, cost
        self.cpu_start = time.process_time()
        self.wall_start = time.monotonic()
        self.memory_peak_mb = 0.0

    def sample(self) -> dict[str, Any]:
        try:
            import psutil

            self.memory_peak_mb = max(self.memory_peak_mb, psutil.Process(os.getpid()).memory_info().rss / 2**20)
        except Exception:  # noqa: S110 (memory is a best-effort figure)
            pass
        return {
            "cpu_time": round(time.process_time() - self.cpu_start, 4),
            "memory_peak": round(self.memory_peak_mb, 1),
            "execution_time": round(time.monotonic() - self.wall_start, 4),
        }


def execute(
    store: RunStore,
    execution_id: str,
    token: str,
    env: RunEnvironment,
    *,
    takeover: str | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> Outcome:
    """Run (or resume) one execution to its end or its next wait."""
    run = store.claim(execution_id, token, takeover)
    if run is None:
        return Outcome("not_claimed")
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"run-{execution_id[:8]}")
    try:
        return _Runner(store, run, token, env, pool).loop()
    except LostLease:
        return Outcome("lost")
    finally:
        if own_pool:
            pool.shutdown(wait=False)


class _Runner:
    def __init__(
        self, store: RunStore, run: ClaimedRun, token: str, env: RunEnvironment, pool: ThreadPoolExecutor
    ) -> None:
        self.store, self.run, self.token, self.env, self.pool = store, run, token, env, pool
        self.graph = Graph.parse(run.graph)
        self.logs: list[dict[str, Any]] = []
        self.usage = _Usage(run.tokens_used, run.cost)  # a resumed run goes on from what it had used
        options = run.options or {}
        timeout_ms = options.get("timeout") or self.graph.settings.get("timeout")
        started = run.started_at or time.time()
        self.deadline = started + float(timeout_ms) / 1000 if timeout_ms else None
        retry = options.get("retry_count", self.graph.settings.get("retry_count"))
        self.retry_count = int(retry) if retry is not None else env.default_retry_count
        self.leaked = False

    def log(self, level: str, message: str, node_id: str | None = None, **meta: Any) -> None:
        self.logs.append(
            {
                "level": level.upper(),
                "message": message[:10_000],
                "node_id": node_id,
                "metadata": meta,
                "at": time.time(),
            }
        )

    def take_logs(self) -> list[dict[str, Any]]:
        logs, self.logs = self.logs, []
        return logs

    def loop(self) -> Outcome:
        try:
            return self._loop()
        except _Stop as stop:
            return self._finish(stop.status, error=stop.reason)

    def _loop(self) -> Outcome:
        run = self.run
        if run.outcome is not None:  # a wait ended: the waiting node's result, recorded as its step
            node_id = run.outcome["node_id"]
            node = self.graph.nodes[node_id]
            ctx = self._context(node_id, run.head_failures + 1)
            started = time.time()
            try:
                result = NODE_TYPES[node["type"]].resume(ctx, node.get("config", {}), run.outcome)
            except NodeFailed as exc:
                return self._finish(ExecutionStatus.failed, error=f"{node_id}: {exc}")
            self._record(node_id, node, ctx, result, started, input_state=None)
        while run.frontier:
            if self.deadline is not None and time.time() > self.deadline:
                return self._finish(ExecutionStatus.timeout, error="execution timed out")
            node_id = run.frontier[0]
            node = self.graph.nodes[node_id]
            attempt = run.head_failures + 1
            ctx = self._context(node_id, attempt)
            started = time.time()
            before = dict(run.state)
            try:
                config = templates.render(node.get("config", {}), run.state)
                result = self._run_node(node, ctx, config)
            except _Stop as stop:
                return self._finish(stop.status, error=stop.reason)
            except (NodeFailed, ExpressionError) as exc:
                self._failed(node_id, node, ctx, started, str(exc))
                return self._finish(ExecutionStatus.failed, error=f"{node_id}: {exc}")
            except Exception as exc:  # a node's own error: retried with backoff, then the run fails
                reason = f"{type(exc).__name__}: {exc}"
                self._failed(node_id, node, ctx, started, reason)
                retries = node.get("retry_count", self.retry_count)
                if attempt > int(retries):
                    error = f"{node_id} failed after {attempt} attempt(s): {reason}"
                    return self._finish(ExecutionStatus.failed, error=error)
                self._backoff(node, attempt)
                continue
            if result.wait is not None:
                self.log("INFO", f"waiting for {result.wait['kind']}", node_id)
                if not self.store.wait(run, self.token, node_id, result.wait, self.take_logs()):
                    raise LostLease
                return Outcome(ExecutionStatus.waiting, self.leaked)
            self._record(node_id, node, ctx, result, started, input_state=before)
        output = run.state.pop("__output__", None)
        return self._finish(ExecutionStatus.completed, output=output if output is not None else dict(run.state))

    def _context(self, node_id: str, attempt: int) -> NodeContext:
        visit = self.run.visits.get(node_id, 0) + 1
        key = f"{self.run.id}:{node_id}:{attempt}" + (f"@{visit}" if visit > 1 else "")
        pending_output: list[str] = []
        last_flush = [time.monotonic() - OUTPUT_FLUSH_S]  # the first piece goes out at once

        def output(text: str) -> None:
            pending_output.append(text)
            if time.monotonic() - last_flush[0] >= OUTPUT_FLUSH_S:
                self.store.emit_output(self.run.id, node_id, "".join(pending_output))
                pending_output.clear()
                last_flush[0] = time.monotonic()

        def usage(tokens: int, cost: float) -> None:
            self.usage.tokens += tokens
            self.usage.cost += cost
            if pending_output:
                self.store.emit_output(self.run.id, node_id, "".join(pending_output))
                pending_output.clear()

        return NodeContext(
            execution_id=self.run.id,
            node_id=node_id,
            attempt=attempt,
            idempotency_key=key,
            correlation_id=self.run.correlation_id,
            code_modules=self.env.code_modules,
            llm={**self.env.llm, **(self.run.llm or {})},
            http_allowed=self.env.http_allowed,
            log=lambda level, message, **meta: self.log(level, message, node_id, **meta),
            output=output,
            usage=usage,
            map_runner=self.env.map_runner,
            load_framework=self.env.load_framework,
            workspace=self.run.workspace,
            load_code=self.run.load_code,
            stopping=threading.Event(),
            visit=visit,
        )

    def _run_node(self, node: dict[str, Any], ctx: NodeContext, config: dict[str, Any]) -> NodeResult:
        """The node in a worker thread, watched: its own timeout, the run's deadline, and cancellation."""
        kind = NODE_TYPES[node["type"]]
        future: Future[NodeResult] = self.pool.submit(kind.run, ctx, self.run.state, config)
        node_deadline = time.monotonic() + float(node["timeout_s"]) if node.get("timeout_s") else None
        last_renew = time.monotonic()
        while True:
            try:
                return future.result(timeout=POLL_S)
            except TimeoutError:
                pass
            now = time.monotonic()
            if node_deadline is not None and now > node_deadline:
                self.leaked = True
                ctx.stopping.set()
                raise TimeoutError(f"node timed out after {node['timeout_s']}s")
            if self.deadline is not None and time.time() > self.deadline:
                self.leaked = True
                ctx.stopping.set()
                raise _Stop(ExecutionStatus.timeout, f"execution timed out during {ctx.node_id}")
            if now - last_renew >= RENEW_EVERY_S:
                last_renew = now
                if not self.store.renew(self.run.id, self.token):  # cancelled, or the lease is gone
                    self.leaked = True
                    ctx.stopping.set()
                    raise _Stop(ExecutionStatus.cancelled, f"cancelled during {ctx.node_id}")

    def _record(
        self,
        node_id: str,
        node: dict[str, Any],
        ctx: NodeContext,
        result: NodeResult,
        started: float,
        *,
        input_state: dict[str, Any] | None,
    ) -> None:
        run = self.run
        updates = dict(result.updates)
        run.state.update(updates)
        successors = (
            result.goto if result.goto is not None else self.graph.successors(node_id, run.state, result.branch)
        )
        run.frontier = [*run.frontier[1:], *[n for n in successors if n not in run.frontier[1:]]]
        run.steps_done += 1
        run.head_failures = 0
        run.visits[node_id] = run.visits.get(node_id, 0) + 1
        step = Step(
            node_id=node_id,
            node_type=node["type"],
            attempt=ctx.attempt,
            status="completed",
            input=_preview(input_state),
            output=_preview(updates),
            error=None,
            idempotency_key=ctx.idempotency_key,
            started_at=started,
            duration_ms=round((time.time() - started) * 1000, 3),
        )
        # Nodes completed at least once (before a resume too), out of all: 1.0 only when the run ends.
        progress = min(0.99, len(run.visits) / max(len(self.graph.nodes), 1))
        if self.env.observe_step is not None:
            self.env.observe_step(step.duration_ms, step.status)
        if node["type"] in PURE_NODES and not run.frontier:  # the run's last node: the end's write carries it
            run.unrecorded.append(step)
            return
        ok = self.store.checkpoint(
            run,
            self.token,
            step,
            progress=progress,
            current_step=run.frontier[0] if run.frontier else node_id,
            logs=self.take_logs(),
            usage=(self.usage.tokens, self.usage.cost),
            resources=self.usage.sample(),
        )
        self._written(ok)

    def _written(self, outcome: str) -> None:
        if outcome == "lost":
            raise LostLease
        if outcome == "cancelled":
            raise _Stop(ExecutionStatus.cancelled, "cancelled")

    def _failed(self, node_id: str, node: dict[str, Any], ctx: NodeContext, started: float, reason: str) -> None:
        self.log("ERROR", reason, node_id, attempt=ctx.attempt)
        step = Step(
            node_id=node_id,
            node_type=node["type"],
            attempt=ctx.attempt,
            status="failed",
            input=None,
            output=None,
            error=reason[:10_000],
            idempotency_key=ctx.idempotency_key,
            started_at=started,
            duration_ms=round((time.time() - started) * 1000, 3),
        )
        self.run.head_failures += 1
        if self.env.observe_step is not None:
            self.env.observe_step(step.duration_ms, step.status)
        self._written(self.store.record_failure(self.run, self.token, step, self.take_logs()))

    def _backoff(self, node: dict[str, Any], attempt: int) -> None:
        delay = min(float(node.get("retry_backoff_s", 0.5)) * 2 ** (attempt - 1), MAX_BACKOFF_S)
        end = time.monotonic() + delay
        while time.monotonic() < end:
            time.sleep(min(POLL_S * 4, max(end - time.monotonic(), 0)))
        if not self.store.renew(self.run.id, self.token):
            raise _Stop(ExecutionStatus.cancelled, "cancelled while waiting to retry")

    def _finish(
        self, status: ExecutionStatus, *, output: dict[str, Any] | None = None, error: str | None = None
    ) -> Outcome:
        if error:
            self.log("ERROR" if status != ExecutionStatus.cancelled else "INFO", error)
        ok = self.store.finish(
            self.run,
            self.token,
            status,
            output=output,
            error=error,
            logs=self.take_logs(),
            usage=(self.usage.tokens, self.usage.cost),
            resources=self.usage.sample(),
        )
        return Outcome(status if ok else "lost", self.leaked)


class _Stop(Exception):
    def __init__(self, status: ExecutionStatus, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _preview(value: dict[str, Any] | None, limit: int = 20_000) -> dict[str, Any] | None:
    """A step's input/output as recorded: whole if small, else truncated (the state is kept in full)."""
    if value is None:
        return None
    text = json.dumps(value, default=str)
    return value if len(text) <= limit else {"truncated": True, "preview": text[:limit]}
