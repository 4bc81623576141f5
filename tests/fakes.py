"""Fakes of the services' ports (services/ports.py), so that deploy, dispatch and reconcile logic is tested
without Ray, as Ray Serve tests its controller against a mocked replica wrapper.

`FakeAgentActors` behaves as the real actors do towards the database: a started actor loads its agent
through `services.deployments.load_for_activation` (what `AgentActor.__init__` asks the store for), so an
agent deployed through it becomes `active` exactly as on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.errors import InsufficientResources
from persistence.db import Database
from schedulers import admission
from services import deployments
from services.ports import ActorReady, Actors, RouterMessage

NODE = {"CPU": 4.0, "memory": 8192.0 * admission.MB}


@dataclass
class FakeAgentActors:
    db: Database
    # What the cluster can hold: `admit` answers from it as `actors.capacity` + `schedulers.admission` do.
    shape: admission.ClusterShape = field(
        default_factory=lambda: admission.ClusterShape(available=(NODE,), totals=(NODE,))
    )
    # An agent whose actor's constructor fails with this error (as Ray reports it) instead of starting.
    failing: dict[str, str] = field(default_factory=dict)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent id -> the options it started with
    dispatched: list[tuple[str, str]] = field(default_factory=list)  # (agent id, task id), in order
    stopped: list[str] = field(default_factory=list)
    heartbeats: list[tuple[str, str]] = field(default_factory=list)
    _started: int = 0

    @property
    def on_cluster(self) -> bool:
        return True

    def actor_name(self, agent_id: str) -> str:
        return f"agent:{agent_id}"

    def admit(self, request: dict[str, float]) -> admission.Placement:
        placement = admission.place(request, self.shape)
        if placement is admission.Placement.never:
            raise InsufficientResources(f"No node can hold {admission.describe(request)}")
        return placement

    def activate(self, agent_id: str, options: dict[str, Any]) -> None:
        if agent_id in self.live or agent_id in self.failing:
            return
        self._started += 1
        with self.db.transaction() as session:
            spec = deployments.load_for_activation(session, agent_id, f"actor-{self._started}", ())
        if spec is not None:  # an undeployed agent's actor stops itself
            self.live[agent_id] = options

    def wait_ready(self, agent_id: str, *, timeout_s: float) -> ActorReady:
        if agent_id in self.failing:
            return ActorReady(placed=False, error=self.failing[agent_id])
        return ActorReady(placed=agent_id in self.live, node_id="node-1", pid=1)

    def dispatch(self, agent_id: str, options: dict[str, Any], task_id: str) -> None:
        self.activate(agent_id, options)
        self.dispatched.append((agent_id, task_id))

    def heartbeat(self, agent_id: str, at: str) -> bool:
        if agent_id not in self.live:
            return False
        self.heartbeats.append((agent_id, at))
        return True

    def stop(self, agent_id: str) -> bool:
        if self.live.pop(agent_id, None) is None:
            return False
        self.stopped.append(agent_id)
        return True

    def restart(self, agent_id: str, options: dict[str, Any]) -> str:
        self.live.pop(agent_id, None)
        self.activate(agent_id, options)
        return f"actor-{self._started}"

    def live_agent_ids(self) -> set[str]:
        return set(self.live)

    def inspect(self, agent_id: str, *, ping_timeout_s: float) -> dict[str, Any]:
        if agent_id not in self.live:
            return {"status": "missing", "health_status": "unhealthy"}
        return {"status": "running", "health_status": "healthy", "node_id": "node-1", "pid": 1}

    def logs(
        self, container_id: str, *, since: datetime | None, until: datetime | None, tail: int
    ) -> list[dict[str, Any]]:
        return []


@dataclass
class FakeRouterChannel:
    sent: list[RouterMessage] = field(default_factory=list)

    def send(self, message: RouterMessage) -> None:
        self.sent.append(message)

    def stats(self, *, timeout_s: float) -> dict[str, Any] | None:
        return None


@dataclass
class FakeRunLauncher:
    submitted: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)

    def submit(self, execution_id: str, resources: dict[str, Any] | None = None) -> None:
        self.submitted.append((execution_id, resources))


def fake_actors(db: Database) -> Actors:
    return Actors(agents=FakeAgentActors(db), router=FakeRouterChannel(), runs=FakeRunLauncher())
