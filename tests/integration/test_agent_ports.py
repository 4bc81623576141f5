"""Deploy, undeploy, dispatch and the reconciler's decisions against fakes of the actors' ports
(tests/fakes.py), on each real database and without Ray: what the routes and the reconcile pass ask of the
live side, and what they record when it answers or fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import ray
from fastapi.testclient import TestClient
from sqlalchemy import update

from core.clock import utcnow
from core.settings import Settings
from persistence.db import Database
from persistence.models import Agent, Task
from schedulers import admission
from services.ports import Actors, AgentsChanged, TasksRequeued
from services.reconciliation import REDISPATCH_AFTER_S, Reconciliation
from tests.fakes import FakeAgentActors, FakeRouterChannel, FakeRunLauncher, fake_actors
from tests.integration.test_auth_flow import assert_error, bearer, login, register

AGENTS = "/api/v1/agents"
TASKS = "/api/v1/tasks"


@pytest.fixture(autouse=True)
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here may reach Ray: a call that tried would start a local instance."""

    def refuse(*args, **kwargs):
        raise AssertionError("these tests run without Ray")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture
def actors(client: TestClient, db: Database) -> Iterator[Actors]:
    context = client.app.state.context
    real, context.actors = context.actors, fake_actors(db)
    yield context.actors
    context.actors = real


@pytest.fixture
def owner(client: TestClient) -> dict[str, str]:
    register(client, "owner@example.com")  # the first account: an admin, who may write agents and tasks
    return bearer(login(client, "owner@example.com")["access_token"])


def _agent(client: TestClient, owner: dict[str, str], **body) -> dict:
    response = client.post(AGENTS, headers=owner, json={"name": "Bot", "type": "dev", **body})
    assert response.status_code == 201, response.text
    return response.json()


def _deployed(client: TestClient, owner: dict[str, str], **body) -> dict:
    agent = _agent(client, owner, **body)
    response = client.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner)
    assert response.status_code == 200, response.text
    return response.json()


def _status(db: Database, model, row_id: str) -> str:
    with db.session() as session:
        return session.get(model, row_id).status


def test_deploy_starts_the_agents_actor_and_tells_the_router(client, owner, actors, db) -> None:
    agents, router = actors.agents, actors.router
    assert isinstance(agents, FakeAgentActors) and isinstance(router, FakeRouterChannel)
    deployed = _deployed(client, owner, resourceLimits={"cpu": 1})

    assert deployed["status"] == "active"
    request = {"CPU": 1.0, "memory": 512 * admission.MB}  # the default memory limit
    assert agents.live == {deployed["id"]: admission.agent_actor_options(request, 1)}
    assert f"Actor agent:{deployed['id']} requested with 1 CPU, 512 MB" in deployed["deployment_logs"]
    assert router.sent == [AgentsChanged()]


def test_a_deploy_no_node_can_hold_is_refused_and_changes_nothing(client, owner, actors, db) -> None:
    agent = _agent(client, owner, resourceLimits={"cpu": 64})
    response = client.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner)

    assert_error(response, 422, "INSUFFICIENT_RESOURCES")
    assert _status(db, Agent, agent["id"]) == "draft"
    assert actors.agents.live == {} and actors.router.sent == []


def test_an_actor_that_fails_to_start_puts_its_agent_in_error(client, owner, actors, db) -> None:
    agent = _agent(client, owner)
    actors.agents.failing[agent["id"]] = "RuntimeError: the framework could not load"
    response = client.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner)

    assert_error(response, 422, "DEPLOYMENT_FAILED")
    with db.session() as session:
        stored = session.get(Agent, agent["id"])
        assert (stored.status, stored.status_message) == ("error", "RuntimeError: the framework could not load")


def test_a_task_for_a_hosted_agent_is_handed_to_its_actor_once(client, owner, actors, db) -> None:
    agent = _deployed(client, owner)
    task = client.post(TASKS, headers=owner, json={"type": "dev", "title": "t", "agentId": agent["id"]}).json()

    assert task["status"] == "assigned"
    assert actors.agents.dispatched == [(agent["id"], task["id"])]
    # Assigned directly: the router is not asked to route it.
    assert actors.router.sent == [AgentsChanged()]


def test_undeploy_stops_the_actor_and_queues_its_tasks_again(client, owner, actors, db) -> None:
    agent = _deployed(client, owner)
    task = client.post(TASKS, headers=owner, json={"type": "dev", "title": "t", "agentId": agent["id"]}).json()
    response = client.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner)

    assert response.status_code == 200 and response.json()["status"] == "inactive"
    assert actors.agents.stopped == [agent["id"]] and actors.agents.live == {}
    assert _status(db, Task, task["id"]) == "pending"
    assert actors.router.sent[-1] == TasksRequeued()


def _reconciliation(db: Database, settings: Settings, actors: Actors, *, after_s: float = 0.0) -> Reconciliation:
    """A pass whose clock reads `after_s` seconds from now."""
    return Reconciliation(db, settings, actors, now=lambda: utcnow() + timedelta(seconds=after_s))


def test_the_reconciler_starts_deployed_agents_without_an_actor_and_stops_orphans(client, owner, settings, db) -> None:
    agents = FakeAgentActors(db)
    actors = Actors(agents=agents, router=FakeRouterChannel(), runs=FakeRunLauncher())
    wanted = _agent(client, owner)
    with db.transaction() as session:  # active in the database (a cluster restarted): no actor runs it
        session.execute(update(Agent).where(Agent.id == wanted["id"]).values(status="active"))
    agents.live["gone"] = {}  # an actor whose agent no longer exists

    report = _reconciliation(db, settings, actors).run_once()

    assert report["started"] == [wanted["id"]] and report["stopped"] == ["gone"] and report["failed"] == []
    assert set(agents.live) == {wanted["id"]}
    # A second pass finds nothing to do.
    again = _reconciliation(db, settings, actors).run_once()
    assert (again["started"], again["stopped"]) == ([], [])


def test_the_reconciler_leaves_passivated_agents_without_a_process(client, owner, settings, db) -> None:
    agents = FakeAgentActors(db)
    actors = Actors(agents=agents, router=FakeRouterChannel(), runs=FakeRunLauncher())
    idle = _agent(client, owner)
    with db.transaction() as session:
        session.execute(update(Agent).where(Agent.id == idle["id"]).values(status="active", passivated_at=utcnow()))

    assert _reconciliation(db, settings, actors).run_once()["started"] == []
    assert agents.live == {}


def test_the_reconciler_records_an_actor_that_cannot_start(client, owner, settings, db) -> None:
    agents = FakeAgentActors(db, failing={})
    actors = Actors(agents=agents, router=FakeRouterChannel(), runs=FakeRunLauncher())
    broken = _agent(client, owner)
    agents.failing[broken["id"]] = "ImportError: no module named 'crew'"
    with db.transaction() as session:
        session.execute(update(Agent).where(Agent.id == broken["id"]).values(status="deploying"))

    report = _reconciliation(db, settings, actors).run_once()

    assert report["failed"] == [broken["id"]]
    assert _status(db, Agent, broken["id"]) == "error"


def test_the_reconciler_resends_a_task_its_agent_never_took_only_once_it_is_overdue(
    client, owner, actors, settings, db
) -> None:
    agent = _deployed(client, owner)
    task = client.post(TASKS, headers=owner, json={"type": "dev", "title": "t", "agentId": agent["id"]}).json()
    assert actors.agents.dispatched == [(agent["id"], task["id"])]  # the message the actor never acted on

    assert _reconciliation(db, settings, actors).run_once()["redispatched"] == 0  # too early to call it lost
    assert actors.agents.dispatched == [(agent["id"], task["id"])]
    overdue = _reconciliation(db, settings, actors, after_s=REDISPATCH_AFTER_S + 1).run_once()
    assert overdue["redispatched"] == 1
    assert actors.agents.dispatched == [(agent["id"], task["id"])] * 2
