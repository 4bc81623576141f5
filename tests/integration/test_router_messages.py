"""The task router's handling of a batch of messages on each real database, in-process (Ray's transport
aside: `deliver` is what a replica's mailbox calls): one routing pass per batch, each re-read done once
however many messages asked for it, and each owner's organizations read once."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient

from actors.router import TaskRouter
from core.settings import Settings
from persistence.db import Database
from persistence.models import Task
from services import routing
from services.ports import AgentsChanged, TasksRequeued, TaskSubmitted
from tests.fakes import FakeAgentActors
from tests.integration.test_organizations import ORGS, _accounts, _add_member, _create_org
from tests.integration.test_tasks_agents import AGENTS, TASKS, _active, _agent, _task, _user


@pytest.fixture
def router(settings: Settings):
    # The periodic tick out of the way: only the messages route.
    quiet = settings.model_copy(update={"agents": settings.agents.model_copy(update={"router_tick_s": 3600})})
    return TaskRouter(quiet)


def test_a_batch_of_messages_is_one_routing_pass_with_each_re_read_once(
    client: TestClient, db: Database, router: TaskRouter, monkeypatch
) -> None:
    owner = _user(client, "batcher")
    tasks = [_task(client, owner, type="general", title=f"t{n}") for n in range(3)]  # no Ray: stored pending
    agent = _agent(client, owner, mode="external", max_concurrent_tasks=2)
    _active(db, agent["id"])  # after the router started: only a message tells it
    calls: Counter[str] = Counter()

    def counted(name, original):
        def call(*args):
            calls.update([name])
            return original(*args)

        return call

    for name in ("_sync_agents", "_sync_tasks", "_load_rules", "_route"):
        monkeypatch.setattr(router, name, counted(name, getattr(router, name)))
    lookups = []
    read = routing._organizations_of
    monkeypatch.setattr(routing, "_organizations_of", lambda conn, users: (lookups.append(users), read(conn, users))[1])
    with db.session() as session:
        first = routing.NewTask.of(session.get(Task, tasks[0]["id"]))

    assigned = router.deliver(
        [
            (TaskSubmitted(tasks[0]["id"], first), None),  # as the creating route sends it
            (AgentsChanged(), None),
            (TaskSubmitted(tasks[1]["id"]), None),  # as a workflow's task node sends it: read back
            (AgentsChanged(), None),
            (TasksRequeued(), None),
            (TaskSubmitted(tasks[2]["id"]), None),
            ("no_such_message", (), None),  # a previous release's message this one does not know
        ]
    )

    assert assigned == 2  # the agent's limit
    assert calls == {"_sync_agents": 1, "_sync_tasks": 1, "_route": 1}
    # One owner: read once for the batch's three submits, once more by the resync's read of every pending task.
    assert lookups == [{first.owner_id}, {first.owner_id}]
    states = {t["id"]: client.get(f"{TASKS}/{t['id']}", headers=owner).json() for t in tasks}
    assert [states[t["id"]]["status"] for t in tasks] == ["assigned", "assigned", "pending"]  # oldest first
    assert {states[t["id"]]["agent_id"] for t in tasks[:2]} == {agent["id"]}
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 2
    assert router.stats()["queued"] == 1

    # A second delivery of the same tasks assigns nothing twice.
    assert router.deliver([(TaskSubmitted(t["id"]), None) for t in tasks]) == 0
    # As a process of the previous release sends it during an upgrade: `(method, args, trace)`.
    assert router.deliver([("submit", (t["id"],), None) for t in tasks]) == 0
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 2


def test_a_membership_removed_after_the_router_read_it_does_not_route_to_the_organizations_agent(
    client: TestClient, db: Database, router: TaskRouter
) -> None:
    alice, bob = _accounts(client, "alice", "bob")
    org = _create_org(client, alice)
    _add_member(client, org["id"], alice, bob)
    agent = _agent(client, alice.headers, mode="external", owner_type="organization", owner_id=org["id"])
    _active(db, agent["id"])
    router.deliver([(AgentsChanged(), None)])
    first = _task(client, bob.headers, type="general")
    assert router.deliver([(TaskSubmitted(first["id"]), None)]) == 1  # bob's organization's agent takes it
    assert client.get(f"{TASKS}/{first['id']}", headers=bob.headers).json()["agent_id"] == agent["id"]

    removed = client.delete(f"{ORGS}/{org['id']}/members/{bob.id}", headers=alice.headers)
    assert removed.status_code == 200, removed.text
    second = _task(client, bob.headers, type="general")
    # The router still holds bob's organizations from the first task; the assignment re-checks them.
    assert router.deliver([(TaskSubmitted(second["id"]), None)]) == 0
    assert client.get(f"{TASKS}/{second['id']}", headers=bob.headers).json()["status"] == "pending"
    # Queued again with bob's organizations read again; his next task stays pending as well.
    third = _task(client, bob.headers, type="general")
    assert router.deliver([(TaskSubmitted(third["id"]), None)]) == 0
    assert router.stats()["queued"] == 2 and router.stats()["routed"] == 1
    assert client.get(f"{AGENTS}/{agent['id']}", headers=alice.headers).json()["current_tasks"] == 1


def test_a_task_the_router_assigns_to_a_hosted_agent_is_handed_to_its_actor_at_once(
    client: TestClient, db: Database, router: TaskRouter
) -> None:
    # The hand-over is the router's, not the reconciler's re-send a while later (found by tests/chaos: every
    # hosted task waited for the re-send while the router's own dispatch failed).
    owner = _user(client, "hoster")
    agent = _agent(client, owner, max_concurrent_tasks=2)
    _active(db, agent["id"])
    router.deliver([(AgentsChanged(), None)])
    actors = FakeAgentActors(db)
    router._agent_actors = actors
    task = _task(client, owner, type="general")
    assert router.deliver([(TaskSubmitted(task["id"]), None)]) == 1
    assert actors.dispatched == [(agent["id"], task["id"])]
