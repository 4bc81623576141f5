"""The routing policy without Ray: priorities, FIFO, aging, tenant fairness, rules, capacity, load."""

from __future__ import annotations

import random

from schedulers.routing import PRIORITY_LEVELS, AgentSelector, AgentSlot, QueuedTask, RoutingPolicy, TaskQueues

ALICE, BOB = "user:alice", "user:bob"


def _task(
    task_id: str,
    priority: int = 2,
    *,
    tenant: str = ALICE,
    at: float = 0.0,
    type_: str = "general",
    selector: AgentSelector | None = None,
) -> QueuedTask:
    return QueuedTask(task_id, priority, type_, tenant, at, frozenset({tenant}), selector)


def _agent(
    agent_id: str,
    *,
    owner: str = ALICE,
    type_: str | None = None,
    slots: int = 1,
    busy: int = 0,
    capabilities: tuple[str, ...] = (),
    public: bool = False,
) -> AgentSlot:
    return AgentSlot(agent_id, owner, public, type_, frozenset(capabilities), frozenset(), slots, busy)


def _queues(*tasks: QueuedTask, aging_step_s: float = 0) -> TaskQueues:
    queues = TaskQueues(RoutingPolicy(aging_step_s=aging_step_s))
    for task in tasks:
        queues.push(task)
    return queues


def _assigned(queues: TaskQueues, agents: list[AgentSlot], now: float = 0.0) -> list[tuple[str, str]]:
    return [(task.task_id, agent.agent_id) for task, agent in queues.assign(agents, now)]


def test_a_p0_goes_before_a_flood_of_p3_and_fifo_holds_within_a_priority() -> None:
    flood = [_task(f"low-{i}", 3, at=i) for i in range(1000)]
    queues = _queues(*flood, _task("critical", 0, at=2000), _task("high-a", 1, at=1), _task("high-b", 1, at=2))
    assert _assigned(queues, [_agent("a", slots=3)]) == [("critical", "a"), ("high-a", "a"), ("high-b", "a")]
    assert _assigned(queues, [_agent("a", slots=2)]) == [("low-0", "a"), ("low-1", "a")]


def test_capacity_limits_how_many_tasks_an_agent_gets() -> None:
    queues = _queues(*[_task(f"t{i}", at=i) for i in range(5)])
    agents = [_agent("a", slots=2, busy=1), _agent("b", slots=2)]
    decisions = _assigned(queues, agents)
    assert len(decisions) == 3 and len(queues) == 2
    assert [agent.current_tasks for agent in agents] == [2, 2]


def test_the_agent_with_most_free_slots_then_least_load_is_chosen() -> None:
    queues = _queues(_task("t1"))
    assert _assigned(queues, [_agent("busy", slots=4, busy=3), _agent("free", slots=4, busy=1)]) == [("t1", "free")]
    queues = _queues(_task("t2"))
    assert _assigned(queues, [_agent("big", slots=10, busy=8), _agent("small", slots=2)]) == [("t2", "small")]


def test_aging_lets_a_waiting_low_priority_task_overtake_new_high_priority_work() -> None:
    queues = _queues(_task("old-p3", 3, at=0), _task("new-p1", 1, at=950), aging_step_s=300)
    # At t=1000 the P3 task has waited three steps: it counts as P0 and goes first.
    assert _assigned(queues, [_agent("a")], now=1000) == [("old-p3", "a")]
    assert queues.depth() == {"P0": 0, "P1": 1, "P2": 0, "P3": 0}


def test_tenants_take_turns_within_a_priority() -> None:
    flood = [_task(f"alice-{i}", tenant=ALICE, at=i) for i in range(100)]
    queues = _queues(*flood, _task("bob-0", tenant=BOB, at=500), _task("bob-1", tenant=BOB, at=501))
    shared = _agent("shared", public=True, slots=4)
    assert _assigned(queues, [shared]) == [
        ("alice-0", "shared"),
        ("bob-0", "shared"),
        ("alice-1", "shared"),
        ("bob-1", "shared"),
    ]


def test_rules_route_by_type_to_the_matching_role_and_requirements() -> None:
    queues = _queues(
        _task("fix", type_="bugfix"), _task("deploy", type_="deployment"), _task("faq", type_="faq_update")
    )
    agents = [_agent("dev", type_="dev"), _agent("ops", type_="ops"), _agent("faq", type_="faq")]
    assert sorted(_assigned(queues, agents)) == [("deploy", "ops"), ("faq", "faq"), ("fix", "dev")]
    needs_k8s = _task("k8s", selector=AgentSelector(capabilities=frozenset({"kubernetes"})))
    queues = _queues(needs_k8s)
    assert _assigned(queues, [_agent("plain"), _agent("kube", capabilities=("kubernetes", "aws"))]) == [("k8s", "kube")]


def test_a_task_nobody_can_take_waits_without_blocking_the_ones_behind_it() -> None:
    queues = _queues(_task("ops-work", 0, type_="incident"), _task("general", 2))
    assert _assigned(queues, [_agent("dev", type_="dev")]) == [("general", "dev")]
    assert "ops-work" in queues and len(queues) == 1


def test_tasks_only_go_to_agents_their_owner_may_use() -> None:
    queues = _queues(_task("bobs", tenant=BOB))
    assert _assigned(queues, [_agent("alices", owner=ALICE)]) == []
    assert _assigned(queues, [_agent("alices", owner=ALICE), _agent("platform", owner="user:admin", public=True)]) == [
        ("bobs", "platform")
    ]


def test_remove_and_depth() -> None:
    queues = _queues(_task("a", 0), _task("b", 3))
    assert queues.remove("a") and not queues.remove("a")
    assert queues.depth() == {"P0": 0, "P1": 0, "P2": 0, "P3": 1} and len(queues) == 1


def test_tasks_arriving_out_of_order_keep_their_creation_order() -> None:
    # Submits from two API replicas, or a task put back after a stale assignment, arrive late.
    queues = _queues(_task("t0", at=0), _task("t2", at=2), _task("t3", at=3), _task("t1", at=1))
    assert [task for task, _ in _assigned(queues, [_agent("a", slots=4)])] == ["t0", "t1", "t2", "t3"]


def test_aging_is_exact_although_the_queues_are_scanned_only_when_a_task_is_due() -> None:
    rng = random.Random(7)
    step = 10.0
    queues = TaskQueues(RoutingPolicy(aging_step_s=step))
    tasks = [
        _task(f"t{i}", rng.randrange(4), tenant=rng.choice((ALICE, BOB)), at=rng.uniform(0, 100)) for i in range(200)
    ]
    for task in tasks:
        queues.push(task)
    for now in sorted(rng.uniform(0, 150) for _ in range(60)):
        queues.age(now)
        expected = dict.fromkeys(PRIORITY_LEVELS, 0)
        for task in tasks:
            steps = int(max(0.0, now - task.enqueued_at) // step)
            expected[PRIORITY_LEVELS[max(0, task.priority - steps)]] += 1
        assert queues.depth() == expected, now


def test_a_queued_task_pushed_with_new_owners_takes_them_and_keeps_its_place() -> None:
    org = "organization:acme"
    older, newer = _task("older", at=1), _task("newer", at=2)
    queues = _queues(older, newer)
    org_agent = _agent("org-agent", owner=org, slots=2)
    assert _assigned(queues, [org_agent]) == []  # alice is not (yet) a member
    queues.push(older)  # the same owners: nothing changes
    assert len(queues) == 2
    for task in (newer, older):  # the periodic re-read, after alice joined (in any order)
        queues.push(
            QueuedTask(
                task.task_id, task.priority, task.task_type, task.tenant, task.enqueued_at, frozenset({ALICE, org})
            )
        )
    assert len(queues) == 2
    assert _assigned(queues, [org_agent]) == [("older", "org-agent"), ("newer", "org-agent")]
    assert len(queues) == 0
