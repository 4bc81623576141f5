"""The task a framework agent is working on, as its tools and adapters see it: where its output goes while it
runs, and the people's decisions on the tool calls that need one.

The agent's actor opens a `TaskContext` around `AgentRuntime.invoke` (`running`). The adapters and the tools
they wrap (`frameworks._llm.observed`) find it with `current()`: a context variable, which follows the task
into the framework's coroutines, and, for a framework that calls a tool on a thread of its own (where the
variable is not set), the one task this process is running. With several tasks at once and no variable, no
task is found: a gated tool then refuses to run rather than guess.

A tool call that needs a decision nobody has made yet stops the task (`ToolApprovalRequired`, a
`BaseException`, so that a framework's `except Exception` around its tools does not turn it into a tool
error), and the context remembers it (`held`), so the actor holds the task for that decision whatever the
framework made of the exception. When the decision comes, the task runs again from its start; a call of the
same tool with the same arguments then goes on (approved) or answers the model that it was rejected.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_current: ContextVar[TaskContext | None] = ContextVar("orchestrator_task", default=None)
_running: set[TaskContext] = set()
_lock = threading.Lock()


class ToolApprovalRequired(BaseException):
    """A tool call waits for a person: the task stops here, and is held until the decision."""

    def __init__(self, name: str, args: Any) -> None:
        super().__init__(f"the call of {name} waits for a person's approval")
        self.name, self.args = name, args


class ToolApprovalPending(RuntimeError):
    """The same signal for a framework that must see an ordinary error from a tool (AutoGen's agent runtime
    hangs on a `BaseException`): the adapter stops the run itself (`TaskContext.on_hold`)."""


def call_key(name: str, args: Any) -> str:
    """One tool call's identity: the tool's name and its arguments as canonical JSON."""
    return json.dumps([name, args], sort_keys=True, separators=(",", ":"), default=str)


class TaskContext:
    """One task's run in a framework runtime: `emit` its output pieces (`{"kind": "text" | "tool_call" |
    "tool_result", ...}`), the decisions already made on its tool calls (`{"name", "args", "approved",
    "reason"}`), and the call that waits for one (`held`)."""

    def __init__(
        self,
        task_id: str,
        *,
        emit: Callable[[dict[str, Any]], None] | None = None,
        decisions: Iterable[dict[str, Any]] = (),
    ) -> None:
        self.task_id = task_id
        self._emit = emit
        self._decisions = {call_key(d["name"], d.get("args")): d for d in decisions}
        self.held: dict[str, Any] | None = None
        # Set by an adapter that stops its framework's run itself when a call is held (a cancellation token).
        self.on_hold: Callable[[], None] | None = None

    def emit(self, item: dict[str, Any]) -> None:
        if self._emit is not None:
            self._emit(item)

    def decision(self, name: str, args: Any) -> dict[str, Any] | None:
        return self._decisions.get(call_key(name, args))

    def hold(self, name: str, args: Any) -> BaseException:
        """The first call without a decision is the one the task waits on; later ones stop it too. The
        exception for the tool to raise."""
        if self.held is None:
            self.held = {"name": name, "args": args}
        if self.on_hold is not None:
            self.on_hold()
            return ToolApprovalPending(f"the call of {name} waits for a person's approval")
        return ToolApprovalRequired(name, args)


@contextlib.contextmanager
def running(context: TaskContext) -> Iterator[TaskContext]:
    """`context` is the current task for the code this block runs (and the process's only one, if so)."""
    token = _current.set(context)
    with _lock:
        _running.add(context)
    try:
        yield context
    finally:
        _current.reset(token)
        with _lock:
            _running.discard(context)


def current() -> TaskContext | None:
    """The task the calling code works for: the context variable's, else the one task running in this
    process, else None."""
    context = _current.get()
    if context is not None:
        return context
    with _lock:
        return next(iter(_running)) if len(_running) == 1 else None


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """`configuration.tool_approval {tools: [names] | "*", priority, timeout_s}`: the tools whose every call
    waits for a person's decision, and the approval's priority and time to decide."""

    tools: tuple[str, ...] | str = ()
    priority: str = "P1"
    timeout_s: float | None = None


def approval_policy(configuration: dict[str, Any]) -> ApprovalPolicy:
    """The agent's `tool_approval`, checked; ValueError naming the field that is wrong."""
    policy = configuration.get("tool_approval")
    if policy is None:
        return ApprovalPolicy()
    if not isinstance(policy, dict):
        raise ValueError('configuration.tool_approval must be an object {tools: [names] | "*", priority, timeout_s}')
    tools = policy.get("tools", "*")
    if tools != "*" and not (isinstance(tools, list) and all(isinstance(name, str) and name for name in tools)):
        raise ValueError('configuration.tool_approval.tools must be a list of tool names, or "*" for every tool')
    priority = policy.get("priority", "P1")
    if priority not in ("P0", "P1", "P2", "P3"):
        raise ValueError("configuration.tool_approval.priority must be one of P0, P1, P2, P3")
    timeout_s = policy.get("timeout_s")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0
    ):
        raise ValueError("configuration.tool_approval.timeout_s must be a positive number of seconds")
    return ApprovalPolicy(tools if tools == "*" else tuple(tools), priority, float(timeout_s) if timeout_s else None)
