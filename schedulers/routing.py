"""Task routing policy (docs/api.md "Approvals, routing rules and events"): pure Python, no Ray and no I/O,
so that it is tested alone.

- Priority queues P0 > P1 > P2 > P3, FIFO within a priority.
- Aging: a task waiting `aging_step_s` moves up one priority, so low priorities cannot starve.
- Fairness: within a priority, tenants (owners) take turns, so one tenant's flood does not starve
  another's tasks of the same priority.
- Rules map a task type to an agent selector (role/type, capabilities, tags); defaults below.
- Among eligible agents with free capacity (`max_concurrent_tasks`), the one with the most free slots,
  then the lowest load, then the longest idle, takes the task.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PRIORITY_LEVELS = ("P0", "P1", "P2", "P3")


@dataclass(frozen=True, slots=True)
class AgentSelector:
    """Which agents may take a task type: any of `types` (role), all `capabilities`, all `tags`."""

    types: frozenset[str] = frozenset()
    capabilities: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    def matches(self, agent: AgentSlot) -> bool:
        if self.types and agent.agent_type not in self.types:
            return False
        return self.capabilities <= agent.capabilities and self.tags <= agent.tags

    def as_dict(self) -> dict[str, list[str]]:
        return {"types": sorted(self.types), "capabilities": sorted(self.capabilities), "tags": sorted(self.tags)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentSelector:
        return cls(
            types=frozenset(str(v).lower() for v in data.get("types") or ()),
            capabilities=frozenset(data.get("capabilities") or ()),
            tags=frozenset(data.get("tags") or ()),
        )


# The defaults: dev work to a dev agent, operations to an ops agent, knowledge to an FAQ agent. Types are
# matched against the agent's `type` (role); other words clients use for the same roles are included.
DEFAULT_RULES: dict[str, AgentSelector] = {
    **dict.fromkeys(("bugfix", "feature", "refactor"), AgentSelector(types=frozenset({"dev", "coding"}))),
    **dict.fromkeys(("deployment", "monitoring", "incident"), AgentSelector(types=frozenset({"ops"}))),
    **dict.fromkeys(("faq_update", "documentation", "knowledge_sync"), AgentSelector(types=frozenset({"faq"}))),
    # A requirement pipeline's stages (services/requirements.py) go to agents of the stage's role.
    "requirement_analysis": AgentSelector(types=frozenset({"analyst"})),
    "requirement_implementation": AgentSelector(types=frozenset({"implementer"})),
    "requirement_validation": AgentSelector(types=frozenset({"validator"})),
    "requirement_integration": AgentSelector(types=frozenset({"integrator"})),
}
# A type without a rule may go to any agent (the tenant and capacity still apply).
ANY_AGENT = AgentSelector()


@dataclass(frozen=True, slots=True)
class QueuedTask:
    task_id: str
    priority: int  # 0 (P0) … 3 (P3)
    task_type: str
    tenant: str  # "user:<id>" or "organization:<id>": fairness is between these
    enqueued_at: float  # seconds, the router's clock
    # Agents the task's owner may use (docs/api.md "Authentication and authorization"): the owner's own, its
    # organizations', public ones.
    allowed_owners: frozenset[str] = frozenset()
    selector: AgentSelector | None = None  # overrides its type's rule (for the planned `POST /requirements`)


@dataclass(slots=True)
class AgentSlot:
    agent_id: str
    owner: str  # "user:<id>" / "organization:<id>"
    is_public: bool
    agent_type: str | None
    capabilities: frozenset[str]
    tags: frozenset[str]
    max_tasks: int
    current_tasks: int
    last_assigned_at: float = 0.0

    @property
    def free(self) -> int:
        return max(0, self.max_tasks - self.current_tasks)

    @property
    def load(self) -> float:
        return self.current_tasks / self.max_tasks if self.max_tasks else 1.0


@dataclass
class RoutingPolicy:
    aging_step_s: float = 300.0
    rules: dict[str, AgentSelector] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def selector_for(self, task: QueuedTask) -> AgentSelector:
        return task.selector or self.rules.get(task.task_type, ANY_AGENT)

    def eligible(self, task: QueuedTask, agent: AgentSlot) -> bool:
        usable = agent.is_public or agent.owner in task.allowed_owners
        return usable and agent.free > 0 and self.selector_for(task).matches(agent)

    def choose(self, task: QueuedTask, agents: Iterable[AgentSlot]) -> AgentSlot | None:
        best: AgentSlot | None = None
        for agent in agents:
            if not self.eligible(task, agent):
                continue
            if best is None or _better(agent, best):
                best = agent
        return best


def _better(a: AgentSlot, b: AgentSlot) -> bool:
    return (-a.free, a.load, a.last_assigned_at, a.agent_id) < (-b.free, b.load, b.last_assigned_at, b.agent_id)


class TaskQueues:
    """Pending tasks by priority, each priority a round-robin of per-tenant FIFO queues."""

    def __init__(self, policy: RoutingPolicy) -> None:
        self.policy = policy
        # priority -> tenant -> deque of tasks; OrderedDict order is the tenants' turn order.
        self._levels: list[OrderedDict[str, deque[QueuedTask]]] = [OrderedDict() for _ in PRIORITY_LEVELS]
        self._where: dict[str, int] = {}  # task id -> current level
        self._owners: dict[str, frozenset[str]] = {}  # task id -> the owners whose agents it may use
        # No queued task moves up a level before this time: `age` scans the queues only from then on
        # (a scan per routing pass made every submit cost O(queued tasks)).
        self._next_aging_at = math.inf

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._where

    def push(self, task: QueuedTask) -> None:
        """Queue a task; pushing a queued one again is a no-op, unless the owners whose agents it may use
        changed (its owner joined or left an organization): then it takes them, keeping its place."""
        if task.task_id in self._where:
            if self._owners.get(task.task_id) == task.allowed_owners:
                return
            self.remove(task.task_id)
        self._owners[task.task_id] = task.allowed_owners
        level = self._aged_level(task, task.enqueued_at)
        # By creation, not arrival: submits from several API replicas may reach the router out of order,
        # and a task put back after a stale assignment must keep its place.
        self._insert_in_order(level, task)
        self._where[task.task_id] = level
        self._next_aging_at = min(self._next_aging_at, self._aging_due(task, level))

    def remove(self, task_id: str) -> bool:
        self._owners.pop(task_id, None)
        level = self._where.pop(task_id, None)
        if level is None:
            return False
        tenants = self._levels[level]
        for tenant, queue in list(tenants.items()):
            for task in queue:
                if task.task_id == task_id:
                    queue.remove(task)
                    if not queue:
                        del tenants[tenant]
                    return True
        return True

    def task_ids(self) -> list[str]:
        return list(self._where)

    def depth(self) -> dict[str, int]:
        counts = dict.fromkeys(PRIORITY_LEVELS, 0)
        for level, tenants in enumerate(self._levels):
            counts[PRIORITY_LEVELS[level]] = sum(len(queue) for queue in tenants.values())
        return counts

    def age(self, now: float) -> int:
        """Move tasks that have waited long enough up a level (kept in their FIFO order). Returns moves."""
        if now < self._next_aging_at:
            return 0
        moved = 0
        for level in range(1, len(self._levels)):
            for tenant, queue in list(self._levels[level].items()):
                keep: deque[QueuedTask] = deque()
                for task in queue:
                    target = self._aged_level(task, now)
                    if target < level:
                        self._insert_in_order(target, task)
                        self._where[task.task_id] = target
                        moved += 1
                    else:
                        keep.append(task)
                if keep:
                    self._levels[level][tenant] = keep
                else:
                    del self._levels[level][tenant]
        self._next_aging_at = min(
            (
                self._aging_due(task, level)
                for level in range(1, len(self._levels))
                for queue in self._levels[level].values()
                for task in queue
            ),
            default=math.inf,
        )
        return moved

    def assign(self, agents: list[AgentSlot], now: float) -> list[tuple[QueuedTask, AgentSlot]]:
        """Match queued tasks to agents with free capacity: highest level first, tenants in turn, FIFO per
        tenant. A task no agent can take now stays queued without blocking the tasks behind it."""
        self.age(now)
        decisions: list[tuple[QueuedTask, AgentSlot]] = []
        if not any(agent.free for agent in agents):
            return decisions
        for tenants in self._levels:
            progress = True
            while progress and tenants:
                progress = False
                for tenant in list(tenants):
                    queue = tenants.get(tenant)
                    if not queue:
                        continue
                    picked = self._first_placeable(queue, agents)
                    if picked is None:
                        continue
                    task, agent = picked
                    queue.remove(task)
                    if not queue:
                        del tenants[tenant]
                    else:
                        tenants.move_to_end(tenant)  # the next tenant's turn
                    del self._where[task.task_id]
                    del self._owners[task.task_id]
                    agent.current_tasks += 1
                    agent.last_assigned_at = now
                    decisions.append((task, agent))
                    progress = True
                    if not any(a.free for a in agents):
                        return decisions
        return decisions

    def _first_placeable(
        self, queue: deque[QueuedTask], agents: list[AgentSlot]
    ) -> tuple[QueuedTask, AgentSlot] | None:
        for task in queue:
            agent = self.policy.choose(task, agents)
            if agent is not None:
                return task, agent
        return None

    def _aged_level(self, task: QueuedTask, now: float) -> int:
        if self.policy.aging_step_s <= 0:
            return task.priority
        steps = int(max(0.0, now - task.enqueued_at) // self.policy.aging_step_s)
        return max(0, task.priority - steps)

    def _aging_due(self, task: QueuedTask, level: int) -> float:
        """When the task, now at `level`, is due one level up (never at P0, or without aging)."""
        if level == 0 or self.policy.aging_step_s <= 0:
            return math.inf
        return task.enqueued_at + (task.priority - level + 1) * self.policy.aging_step_s

    def _insert_in_order(self, level: int, task: QueuedTask) -> None:
        queue = self._levels[level].setdefault(task.tenant, deque())
        # Older tasks first: an aged task goes ahead of younger ones already at that level.
        index = len(queue)
        while index > 0 and queue[index - 1].enqueued_at > task.enqueued_at:
            index -= 1
        queue.insert(index, task)
