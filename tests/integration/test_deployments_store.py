"""The durable side of agent deployment, on each real database: what actors report through the store,
and what the API answers where no Ray cluster is behind it."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from core.crypto import SecretBox
from persistence.db import Database
from persistence.models import Agent, Event
from services import approvals, deployments
from tests.integration.test_agents import _agent, _user
from tests.integration.test_auth_flow import assert_error

AGENTS = "/api/v1/agents"


def _set(db: Database, agent_id: str, **values) -> None:
    with db.transaction() as session:
        session.execute(update(Agent).where(Agent.id == agent_id).values(**values))


def _events(db: Database, agent_id: str) -> list[Event]:
    with db.session() as session:
        query = select(Event).where(Event.subject_id == agent_id).order_by(Event.created_at, Event.id)
        return list(session.execute(query).scalars())


def test_an_actor_starting_for_a_deploying_agent_makes_it_active_with_an_event(client: TestClient, db) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner, framework="langgraph", configuration={"graph": "pkg.mod:graph"}, version="2.0.0")
    _set(db, agent["id"], status="deploying")
    with db.transaction() as session:
        spec = deployments.load_for_activation(session, agent["id"], "actor-1", ())
    assert spec is not None and spec.framework == "langgraph" and spec.version == "2.0.0"
    assert spec.configuration == {"graph": "pkg.mod:graph"}
    stored = client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()
    assert stored["status"] == "active" and stored["container_id"] == "actor-1" and stored["deployed_at"]
    [event] = [event for event in _events(db, agent["id"]) if event.event_type != "agent.created"]
    assert event.event_type == "agent.status_changed" and event.data["status"] == "active"
    assert (event.owner_type, event.owner_id) == ("user", agent["owner_id"])


def test_an_actor_of_an_agent_no_longer_deployed_is_told_to_stop(client: TestClient, db) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner)
    for status in ("draft", "inactive", "error"):
        _set(db, agent["id"], status=status)
        with db.transaction() as session:
            assert deployments.load_for_activation(session, agent["id"], "actor-1", ()) is None
    with db.transaction() as session:
        assert deployments.load_for_activation(session, "no-such-agent", "actor-1", ()) is None


def test_only_the_current_incarnation_may_passivate_and_reactivation_clears_it(client: TestClient, db) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner)
    _set(db, agent["id"], status="active", container_id="actor-2")
    with db.transaction() as session:
        assert deployments.mark_passivated(session, agent["id"], "actor-1") is False  # a stale incarnation
        assert deployments.mark_passivated(session, agent["id"], "actor-2") is True
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["passivated_at"]
    with db.transaction() as session:
        deployments.load_for_activation(session, agent["id"], "actor-3", ())
    stored = client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()
    assert stored["status"] == "active" and stored["passivated_at"] is None and stored["container_id"] == "actor-3"


def test_the_reconciler_wants_deploying_and_active_agents_with_their_resources(client: TestClient, db, settings):
    owner = _user(client, "owner")
    live, idle, draft = (_agent(client, owner, resource_limits={"cpu": 2, "memory": 1024}) for _ in range(3))
    _set(db, live["id"], status="active")
    _set(db, idle["id"], status="active", passivated_at=deployments.utcnow())
    with db.session() as session:
        wanted = {item.agent_id: item for item in deployments.agents_to_run(session, settings)}
    assert set(wanted) == {live["id"], idle["id"]} and draft["id"] not in wanted
    assert wanted[idle["id"]].passivated and not wanted[live["id"]].passivated
    assert wanted[live["id"]].options == {"num_cpus": 2.0, "memory": 1024 * 1024 * 1024, "max_concurrency": 5}


def test_deploy_checks_the_framework_before_anything_changes(client: TestClient) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner, framework="metagpt")
    error = assert_error(client.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner), 422, "FRAMEWORK_UNAVAILABLE")
    assert "orchestrator.frameworks" in error["message"]
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["status"] == "draft"


def test_without_a_ray_cluster_deploy_answers_503_and_changes_nothing(client: TestClient) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner)
    assert_error(client.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner), 503, "SERVICE_UNAVAILABLE")
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["status"] == "draft"
    container = client.get(f"{AGENTS}/{agent['id']}/container", headers=owner).json()
    assert container["status"] == "stopped" and container["health_status"] == "none"


def test_heartbeats_are_for_deployed_external_agents(client: TestClient, db) -> None:
    owner = _user(client, "owner")
    hosted, external = _agent(client, owner), _agent(client, owner, mode="external")
    assert_error(client.post(f"{AGENTS}/{hosted['id']}/heartbeat", headers=owner), 409, "CONFLICT")
    assert_error(client.post(f"{AGENTS}/{external['id']}/heartbeat", headers=owner), 409, "CONFLICT")
    assert client.get(f"{AGENTS}/{external['id']}", headers=owner).json()["online"] is False
    assert client.get(f"{AGENTS}/{hosted['id']}", headers=owner).json()["online"] is None
    _set(db, external["id"], status="active", last_heartbeat_at=deployments.utcnow())
    assert client.get(f"{AGENTS}/{external['id']}", headers=owner).json()["online"] is True


def test_restarting_needs_an_active_agent_and_undeploying_a_draft_is_an_invalid_transition(client: TestClient):
    owner = _user(client, "owner")
    agent = _agent(client, owner)
    assert_error(client.post(f"{AGENTS}/{agent['id']}/container/restart", headers=owner), 409, "CONFLICT")
    assert_error(client.post(f"{AGENTS}/{agent['id']}/undeploy", headers=owner), 409, "INVALID_TRANSITION")


def test_deploy_refuses_code_outside_the_allowed_modules_before_anything_changes(client: TestClient) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner, configuration={"handler": "subprocess:run"})
    error = assert_error(client.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner), 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "configuration.handler" and "subprocess" in error["details"][0]["message"]
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["status"] == "draft"


def test_a_new_process_fails_the_tasks_the_old_one_was_running(client: TestClient, db) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner)
    _set(db, agent["id"], status="active", container_id="actor-1")
    task = client.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"]}).json()
    with db.transaction() as session:
        assert deployments.tasks.start_for_agent(session, task["id"], agent["id"]) is not None
    with db.transaction() as session:
        assert deployments.load_for_activation(session, agent["id"], "actor-1", ()) is not None
    stored = client.get(f"/api/v1/tasks/{task['id']}", headers=owner).json()
    assert stored["status"] == "failed" and "process stopped" in stored["error"]
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 0


def test_an_idle_actor_with_a_task_on_its_way_does_not_passivate(client: TestClient, db) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner)
    _set(db, agent["id"], status="active", container_id="actor-1")
    client.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"]})
    with db.transaction() as session:
        assert deployments.mark_passivated(session, agent["id"], "actor-1") is False


def test_stale_external_workers_are_reported_offline_once(client: TestClient, db, settings) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner, mode="external")
    long_ago = deployments.utcnow() - deployments.timedelta(seconds=settings.agents.agent_heartbeat_timeout_s + 5)
    _set(db, agent["id"], status="active", last_heartbeat_at=long_ago)
    with db.transaction() as session:
        assert deployments.mark_stale_workers_offline(session, settings) == [agent["id"]]
    with db.transaction() as session:
        assert deployments.mark_stale_workers_offline(session, settings) == []  # once per silence
    offline = [e for e in _events(db, agent["id"]) if e.data.get("online") is False]
    assert len(offline) == 1 and client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["online"] is False


def test_a_tool_call_held_for_a_person_frees_the_agent_and_either_decision_gives_the_task_back(
    client: TestClient, db, settings
) -> None:
    owner = _user(client, "owner")
    me = client.get("/api/v1/users/me", headers=owner).json()
    agent = _agent(client, owner)
    _set(db, agent["id"], status="active", container_id="actor-1")
    task = client.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"]}).json()
    with db.transaction() as session:
        assert deployments.tasks.start_for_agent(session, task["id"], agent["id"])["tool_decisions"] == []
        # Output while it runs: one task.output event for the owner.
        pieces = [{"kind": "text", "text": "Looking"}, {"kind": "tool_call", "name": "get_weather", "args": {}}]
        assert deployments.tasks.emit_output(session, task["id"], agent["id"], pieces)
    [output] = [event for event in _events(db, task["id"]) if event.event_type == "task.output"]
    assert output.data["items"] == pieces and (output.owner_type, output.owner_id) == ("user", me["id"])
    call = {"name": "get_weather", "args": {"city": "Paris"}}
    with db.transaction() as session:
        approval_id = approvals.request_for_tool_call(session, task["id"], agent["id"], call, settings).id
    stored = client.get(f"/api/v1/tasks/{task['id']}", headers=owner).json()
    assert stored["status"] == "awaiting_approval" and stored["agent_id"] == agent["id"]
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["current_tasks"] == 0  # holds no slot
    shown = client.get(f"/api/v1/approvals/{approval_id}", headers=owner).json()
    assert shown["tool_call"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert shown["agent_id"] == agent["id"] and shown["status"] == "pending" and shown["priority"] == "P1"
    assert shown["context"]["preview"] == {"tool": "get_weather", "arguments": {"city": "Paris"}}
    # Rejected: the task goes back to its agent (not failed), which runs it again knowing the decision.
    with db.transaction() as session:
        outcome = approvals.decide(session, approval_id, me["id"], False, "not today", settings)
    assert outcome["assigned"] is not None and outcome["assigned"].agent_id == agent["id"]
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=owner).json()["status"] == "assigned"
    with db.transaction() as session:
        started = deployments.tasks.start_for_agent(session, task["id"], agent["id"])
    assert started["tool_decisions"] == [{**call, "approved": False, "reason": "not today"}]
    # Its result's usage becomes the task's figures, priced by the platform's rate.
    usage = {"input_tokens": 30, "output_tokens": 10, "total_tokens": 40}
    with db.transaction() as session:
        assert deployments.tasks.finish_for_agent(session, task["id"], agent["id"], {"usage": usage}, None, 0.5)
    stored = client.get(f"/api/v1/tasks/{task['id']}", headers=owner).json()
    assert stored["status"] == "completed" and stored["tokens_used"] == 40 and stored["cost"] == 0.02


def test_a_tool_approval_policy_it_cannot_apply_is_refused_at_deploy(client: TestClient) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner, configuration={"tool_approval": {"tools": "get_weather"}})
    error = assert_error(client.post(f"{AGENTS}/{agent['id']}/deploy", headers=owner), 422, "VALIDATION_ERROR")
    assert (
        error["details"][0]["field"] == "configuration.tool_approval"
        and "list of tool names" in error["details"][0]["message"]
    )
    assert client.get(f"{AGENTS}/{agent['id']}", headers=owner).json()["status"] == "draft"


def test_an_actor_superseded_by_another_clusters_neither_takes_nor_finishes_the_agents_tasks(
    client: TestClient, db
) -> None:
    """A cluster swap with both clusters up: the new cluster's actor took the agent over (its activation), the
    old cluster's actor still answers its router. A task the old actor took would be left `in_progress` when
    its cluster goes; an outcome it reports would overwrite the current actor's attempt."""
    owner = _user(client, "owner")
    agent = _agent(client, owner)
    _set(db, agent["id"], status="active", container_id="cluster-a-actor")
    with db.transaction() as session:
        assert deployments.load_for_activation(session, agent["id"], "cluster-b-actor", ()) is not None
    task = client.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"]}).json()
    assert task["status"] == "assigned"
    with db.transaction() as session:
        assert deployments.start_task(session, task["id"], agent["id"], "cluster-a-actor") is None
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=owner).json()["status"] == "assigned"
    with db.transaction() as session:
        assert deployments.start_task(session, task["id"], agent["id"], "cluster-b-actor") is not None
    with db.transaction() as session:
        assert deployments.finish_task(session, task["id"], agent["id"], "cluster-a-actor", {"by": "a"}, None) is False
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=owner).json()["status"] == "in_progress"
    with db.transaction() as session:
        assert deployments.finish_task(session, task["id"], agent["id"], "cluster-b-actor", {"by": "b"}, None) is True
    stored = client.get(f"/api/v1/tasks/{task['id']}", headers=owner).json()
    assert stored["status"] == "completed" and stored["result"] == {"by": "b"}


def test_the_current_actor_takes_again_a_task_whose_taking_it_never_heard_of(client: TestClient, db) -> None:
    """The store committed `start_task` and died before answering; Ray's retry on the restarted store finds
    the task `in_progress`. The agent's current actor gets it again (it runs no such task: the actor checks),
    unchanged; another incarnation, or a caller that names none, does not."""
    owner = _user(client, "owner")
    agent = _agent(client, owner)
    _set(db, agent["id"], status="active", container_id="actor-1")
    task = client.post("/api/v1/tasks", headers=owner, json={"agentId": agent["id"], "payload": {"n": 1}}).json()
    with db.transaction() as session:
        first = deployments.start_task(session, task["id"], agent["id"], "actor-1")
    assert first is not None and first["retaken"] is False
    before = client.get(f"/api/v1/tasks/{task['id']}", headers=owner).json()
    recorded = len(_events(db, task["id"]))
    with db.transaction() as session:
        again = deployments.start_task(session, task["id"], agent["id"], "actor-1")
        assert deployments.start_task(session, task["id"], agent["id"], None) is None
        assert deployments.start_task(session, task["id"], agent["id"], "actor-0") is None
    assert again is not None and again["retaken"] is True and again["payload"] == {"n": 1}
    after = client.get(f"/api/v1/tasks/{task['id']}", headers=owner).json()
    assert after["status"] == "in_progress" and after["started_at"] == before["started_at"]
    assert len(_events(db, task["id"])) == recorded  # no move, no event


def test_a_framework_agent_without_a_provider_uses_its_owners_settings_else_the_platforms(
    client: TestClient, db, settings
) -> None:
    owner = _user(client, "owner")
    agent = _agent(client, owner)
    box = SecretBox.from_settings(client.app.state.context.settings)  # the app's, which holds the key
    platform = {"base_url": "http://llm.platform/v1", "model": "platform-model", "api_key": "platform-key"}
    with db.session() as session:
        assert deployments.default_llm(session, agent["id"], platform, box) == platform
    mine = {"openai_base_url": "http://llm.mine/v1", "llm_model": "my-model", "openai_api_key": "sk-mine-0123456789"}
    assert client.post("/api/v1/settings", headers=owner, json=mine).status_code == 200
    with db.session() as session:
        chosen = deployments.default_llm(session, agent["id"], platform, box)
    assert chosen == {"base_url": "http://llm.mine/v1", "model": "my-model", "api_key": "sk-mine-0123456789"}
