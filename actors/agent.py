"""`AgentActor`: one per deployed agent, named `agent:<id>` (docs/architecture.md "The actors").

Hosted mode: the agent's framework runtime lives here and its work runs here (`invoke`). External mode:
the actor is the remote worker's mailbox and watches its heartbeat. Either way the actor holds no state
the database does not: it loads the agent through the store when it starts (deploy, restart, crash,
re-activation), and an idle actor passivates (records it, then exits) so that it holds no process until
its next message re-activates it by name.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psutil
import ray

from actors.names import STORE_NAME
from core.clock import isoformat_z, utcnow
from core.logging import configure_logging
from frameworks import adapter_for
from frameworks.context import TaskContext, ToolApprovalRequired, approval_policy, running
from schedulers.task_lifecycle import TaskStatus

log = logging.getLogger("orchestrator.agent")


class AgentNotDeployed(RuntimeError):
    """The agent was undeployed or deleted while this actor started: it must not run."""


class AgentPassivating(RuntimeError):
    """The actor is releasing its process: the call is refused, and a new call re-activates the agent."""


class AgentActor:
    def __init__(
        self,
        agent_id: str,
        namespace: str,
        idle_timeout_s: float,
        heartbeat_timeout_s: float,
        max_concurrent_tasks: int = 1,
    ) -> None:
        configure_logging("INFO")
        self._agent_id = agent_id
        self._idle_timeout_s = idle_timeout_s
        self._heartbeat_timeout_s = heartbeat_timeout_s
        context = ray.get_runtime_context()
        self._container_id = context.get_actor_id()
        self._node_id = context.get_node_id()
        self._store = ray.get_actor(STORE_NAME, namespace=namespace)
        spec = ray.get(self._store.activate_agent.remote(agent_id, self._container_id))
        if spec is None:
            raise AgentNotDeployed(f"agent {agent_id} is not deployed; this actor stops")
        self._spec = spec
        self._runtime = adapter_for(spec.framework).load(spec)
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # starts the CPU measurement window
        self._started_at = utcnow()
        self._lock = threading.Lock()
        # The agent's max_concurrent_tasks: work beyond it waits here, pings and control calls do not.
        self._slots = threading.BoundedSemaphore(max(1, max_concurrent_tasks))
        self._in_flight = 0
        self._running: set[str] = set()  # the tasks this actor is running now
        self._last_activity = time.monotonic()
        self._last_heartbeat: datetime | None = None
        self._passivating = False
        self._closing = False
        threading.Thread(target=self._watch, name="agent-watchdog", daemon=True).start()
        log.info(
            "agent %s started: framework=%s mode=%s version=%s pid=%d",
            spec.name,
            spec.framework,
            spec.mode,
            spec.version,
            os.getpid(),
        )

    def ready(self) -> dict[str, Any]:
        return {"container_id": self._container_id, "node_id": self._node_id, "pid": os.getpid()}

    def status(self) -> dict[str, Any]:
        """The health ping of the container endpoint: this process's own view of itself."""
        memory = self._process.memory_info()
        with self._lock:
            in_flight, idle_s = self._in_flight, time.monotonic() - self._last_activity
        return {
            "container_id": self._container_id,
            "node_id": self._node_id,
            "pid": os.getpid(),
            "started_at": isoformat_z(self._started_at),
            "cpu_percent": round(self._process.cpu_percent(None), 1),
            "memory_usage": round(memory.rss / (1024 * 1024), 1),
            "in_flight": in_flight,
            "idle_seconds": round(idle_s, 1),
            "framework": self._spec.framework,
            "mode": self._spec.mode,
            "loaded_version": self._spec.version,
            "loaded_name": self._spec.name,
            "last_heartbeat_at": isoformat_z(self._last_heartbeat) if self._last_heartbeat else None,
            "online": self._online() if self._spec.mode == "external" else None,
        }

    def run_task(self, task_id: str) -> str:
        """Run an assigned task (hosted mode): take it through the store (in_progress), run the task's
        payload in the framework runtime, record the result or the error. A task that is not this agent's
        assigned one any more (a repeated dispatch) is skipped."""
        with self._lock:
            if task_id in self._running:  # a repeated dispatch of a task this actor runs now
                return "skipped"
            self._running.add(task_id)
        try:
            self._begin()
        except AgentPassivating:
            with self._lock:
                self._running.discard(task_id)
            raise
        try:
            # Ray retries this call on a restarted store; the store then gives the task again (`retaken`)
            # if the lost answer had taken it: this actor runs no such task (above), so none runs it twice.
            task = ray.get(self._store.start_task.remote(task_id, self._agent_id, self._container_id))
            if task is None:
                return "skipped"
            if task.get("execution_id"):  # the agent's active workflow runs it, on a run actor
                log.info("task %s runs as workflow run %s", task_id, task["execution_id"])
                return "workflow"
            started = time.perf_counter()
            output = TaskOutput(self._store, task_id, self._agent_id)
            context = TaskContext(task_id, emit=output.add, decisions=task.get("tool_decisions") or ())
            try:
                with self._slots, running(context):
                    result, error = self._runtime.invoke(task["payload"]), None
            except (Exception, ToolApprovalRequired) as exc:  # the task fails (or waits), the agent lives on
                result, error = None, f"{type(exc).__name__}: {exc}"
            finally:
                output.close()
            if context.held is not None:  # a tool call waits for a person: the task waits, holding nothing here
                policy = approval_policy(self._spec.configuration)
                ray.get(
                    self._store.hold_task_for_tool.remote(
                        task_id, self._agent_id, context.held, policy.priority, policy.timeout_s
                    )
                )
                log.info("task %s waits for approval of a call of %s", task_id, context.held["name"])
                return TaskStatus.awaiting_approval
            if error:
                log.warning("task %s failed: %s", task_id, error)
            ray.get(self._store.finish_task.remote(task_id, self._agent_id, result, error, self._container_id))
            log.info(
                "task %s %s in %.0f ms",
                task_id,
                TaskStatus.failed if error else TaskStatus.completed,
                (time.perf_counter() - started) * 1000,
            )
            return TaskStatus.failed if error else TaskStatus.completed
        finally:
            self._end()
            with self._lock:
                self._running.discard(task_id)

    def heartbeat(self, at: str) -> None:
        """The external worker is alive. Not work: a worker that only beats lets its mailbox passivate."""
        with self._lock:
            self._last_heartbeat = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(UTC)

    def passivate(self) -> bool:
        """Release the process if still idle: record it, then exit. Re-activation is by name."""
        with self._lock:
            if self._in_flight or time.monotonic() - self._last_activity < self._idle_timeout_s:
                self._passivating = False
                return False
            self._closing = True  # from here on, new work is refused (the caller re-activates by name)
        try:
            recorded = ray.get(self._store.passivate_agent.remote(self._agent_id, self._container_id))
        except Exception:
            log.exception("agent %s could not record its passivation; staying up", self._agent_id)
            recorded = False
        if not recorded:  # not the current incarnation, work on its way, or the store unreachable
            with self._lock:
                self._closing = self._passivating = False
                self._last_activity = time.monotonic()
            return False
        log.info("agent %s idle for %.0fs: passivated", self._spec.name, self._idle_timeout_s)
        self._runtime.close()
        ray.actor.exit_actor()
        return True  # not reached

    def _begin(self) -> None:
        with self._lock:
            if self._closing:
                raise AgentPassivating(f"agent {self._agent_id} is passivating; call it again to re-activate it")
            self._in_flight += 1
            self._last_activity = time.monotonic()

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._last_activity = time.monotonic()

    def _watch(self) -> None:
        period = max(0.2, min(5.0, self._idle_timeout_s / 4))
        me = ray.get_runtime_context().current_actor
        while True:
            time.sleep(period)
            try:
                with self._lock:
                    idle = not self._in_flight and time.monotonic() - self._last_activity >= self._idle_timeout_s
                    start = idle and not self._passivating
                    self._passivating = self._passivating or start
                if start:
                    me.passivate.remote()
            except Exception:  # a watchdog that dies silently would keep the process forever
                log.exception("agent %s watchdog", self._agent_id)

    def _online(self) -> bool:
        with self._lock:
            last = self._last_heartbeat
        return last is not None and (utcnow() - last).total_seconds() <= self._heartbeat_timeout_s


class TaskOutput:
    """A task's output pieces on their way to its `task.output` events: gathered here and sent to the store
    at most every `interval_s` (a token each would be a write each), one batch at a time so that they are
    stored in order, and the rest when the task ends."""

    def __init__(self, store: Any, task_id: str, agent_id: str, interval_s: float = 0.2) -> None:
        self._store, self._task_id, self._agent_id = store, task_id, agent_id
        self._interval_s = interval_s
        self._pieces: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._sent_at = time.monotonic()
        self._in_flight: Any = None

    def add(self, piece: dict[str, Any]) -> None:
        with self._lock:
            if self._pieces and piece.get("kind") == "text" and self._pieces[-1].get("kind") == "text":
                self._pieces[-1] = {"kind": "text", "text": self._pieces[-1]["text"] + piece["text"]}
            else:
                self._pieces.append(piece)
            due = time.monotonic() - self._sent_at >= self._interval_s
        if due:
            self._send()

    def close(self) -> None:
        """Send what is left, and wait until it is stored: the task's end comes after its output."""
        self._send()
        with self._send_lock:
            self._wait()

    def _send(self) -> None:
        with self._send_lock:
            with self._lock:
                pieces, self._pieces = self._pieces, []
                self._sent_at = time.monotonic()
            if pieces:
                self._wait()  # the batch before it first: events are numbered as they are stored
                self._in_flight = self._store.task_output.remote(self._task_id, self._agent_id, pieces)

    def _wait(self) -> None:
        sent, self._in_flight = self._in_flight, None
        if sent is None:
            return
        try:
            ray.get(sent)
        except Exception:  # output is best effort: the task's outcome must still be recorded
            log.warning("task %s: some of its output was not stored", self._task_id, exc_info=True)
