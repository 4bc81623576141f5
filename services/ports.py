"""What the services need from live actors, declared here and implemented in `actors/` (docs/architecture.md,
"Ports").

The services own these interfaces; `actors/` implements them with the only `ray.*` calls, and a process
wires the implementation where it is assembled (the API's `AppContext`, an actor's constructor). Tests
use the fakes in `tests/fakes.py`, so that deploy, dispatch and reconcile logic is tested without Ray.

Every port is fire-and-forget where the database already holds what a call says: a lost message delays
the work by one reconcile or router pass, it never loses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from schedulers.admission import Placement


@dataclass(frozen=True, slots=True)
class ActorReady:
    """Whether an agent's actor started: `placed` once its constructor ran; `error` if it failed."""

    placed: bool
    error: str | None = None
    node_id: str | None = None
    pid: int | None = None


class AgentActors(Protocol):
    """The agents' actors (one per deployed agent, started on demand, passivated when idle)."""

    @property
    def on_cluster(self) -> bool:
        """Whether this process can reach the cluster (an in-process app in tests cannot)."""
        ...

    def actor_name(self, agent_id: str) -> str: ...

    def admit(self, request: dict[str, float]) -> Placement:
        """Where a resource request stands on the cluster; raises INSUFFICIENT_RESOURCES when never."""
        ...

    def activate(self, agent_id: str, options: dict[str, Any]) -> None:
        """Get or start the agent's actor (deploy, re-activation). Its constructor loads the agent."""
        ...

    def wait_ready(self, agent_id: str, *, timeout_s: float) -> ActorReady: ...

    def dispatch(self, agent_id: str, options: dict[str, Any], task_id: str) -> None:
        """Hand an assigned task to the agent's actor, re-activating it if needed, without waiting. The one
        way a task reaches an agent: `services.routing.hand_over` calls it."""
        ...

    def heartbeat(self, agent_id: str, at: str) -> bool:
        """Tell a live actor its external worker beat; never wakes a passivated one."""
        ...

    def stop(self, agent_id: str) -> bool: ...

    def restart(self, agent_id: str, options: dict[str, Any]) -> str:
        """Kill the actor's process for Ray to start again (or activate it); its container id."""
        ...

    def live_agent_ids(self) -> set[str]: ...

    def inspect(self, agent_id: str, *, ping_timeout_s: float) -> dict[str, Any]: ...

    def logs(
        self, container_id: str, *, since: datetime | None, until: datetime | None, tail: int
    ) -> list[dict[str, Any]]: ...


# --- the task router's messages -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskSubmitted:
    """A new pending task to queue. `task`: the task as its creator wrote it (a `services.routing.NewTask`),
    so that the router need not read it back; None: the router reads it."""

    task_id: str
    task: Any = None


@dataclass(frozen=True, slots=True)
class AgentsChanged:
    """An agent was deployed, enabled or disabled, or a task left an agent: re-read the agents' capacity."""


@dataclass(frozen=True, slots=True)
class TasksRequeued:
    """Tasks went back to the queue, left it or changed priority: re-read tasks and agents."""


@dataclass(frozen=True, slots=True)
class RulesChanged:
    """The routing rules were replaced: re-read them."""


RouterMessage = TaskSubmitted | AgentsChanged | TasksRequeued | RulesChanged


class RouterChannel(Protocol):
    """The cluster's task router."""

    def send(self, message: RouterMessage) -> None:
        """Tell the router, within the caller's trace; batched with the process's other messages."""
        ...

    def stats(self, *, timeout_s: float) -> dict[str, Any] | None:
        """The router's live queues and free slots; None when it does not answer."""
        ...


class RunLauncher(Protocol):
    """The pool of run actors."""

    def submit(self, execution_id: str, resources: dict[str, Any] | None = None) -> None:
        """Hand a run to the pool to start or resume (a repeated submit of the same run is harmless)."""
        ...


@dataclass(frozen=True, slots=True)
class Actors:
    """The ports a process uses, wired together where it is assembled."""

    agents: AgentActors
    router: RouterChannel
    runs: RunLauncher
