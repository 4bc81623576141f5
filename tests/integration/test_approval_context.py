"""Approvals carry what they gate, on each real database: the run and node (or the task) and the agent, a
description and a preview with secrets masked, a JSON Schema of input the decision must carry (given to
the resumed run), pending filters and expiry order, and a second decision answered 409 naming who
decided."""

from __future__ import annotations

from tests.integration import test_workflows as flows
from tests.integration.test_auth_flow import assert_error, bearer, login
from tests.integration.test_workflows import _chain, _drive, _run, _workflow

# The workflow tests' fixtures: an app with the test fixtures' code allowed, and its first two accounts.
settings, client, owner = flows.settings, flows.client, flows.owner

SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "integer", "maximum": 1000}, "note": {"type": "string"}},
    "required": ["amount"],
}


def _gated(client, owner) -> dict:
    nodes, edges = _chain(
        {"id": "in", "type": "input"},
        {
            "id": "gate",
            "type": "approval",
            "config": {
                "reason": "Pay {{ state.vendor }}?",
                "description": "**Pay** the vendor <script>x</script>",
                "input_schema": SCHEMA,
            },
        },
        {"id": "out", "type": "output"},
    )
    return _workflow(client, owner, nodes, edges)


def test_an_approval_node_names_its_run_and_carries_context_and_input(client, settings, db, owner) -> None:
    workflow = _gated(client, owner)
    body = {"input_data": {"vendor": "ACME", "api_key": "hunter2", "token": "sk-abcdef1234567890", "big": "x" * 9000}}
    run = _run(client, settings, db, owner, workflow, body)
    assert run["status"] == "waiting"
    [approval] = client.get(f"/api/v1/approvals/pending?execution_id={run['id']}", headers=owner).json()["approvals"]
    assert approval["execution_id"] == run["id"] and approval["node_id"] == "gate"
    assert approval["input_schema"] == SCHEMA and approval["reason"] == "Pay ACME?"
    context = approval["context"]
    assert context["description"] == "**Pay** the vendor <script>x</script>"  # the console renders it escaped
    assert context["preview"]["vendor"] == "ACME" and context["preview"]["api_key"] == "•••"
    assert context["preview"]["token"] == "•••" and context["truncated"] is True
    assert len(context["preview"]["big"]) < 1000

    admin = bearer(login(client, "root@example.com")["access_token"])
    missing = client.post(f"/api/v1/approvals/{approval['id']}/approve", headers=admin)
    assert_error(missing, 422, "VALIDATION_ERROR")
    wrong = client.post(f"/api/v1/approvals/{approval['id']}/approve", headers=admin, json={"input": {"amount": 5000}})
    assert_error(wrong, 422, "VALIDATION_ERROR")
    assert wrong.json()["error"]["details"][0]["field"] == "input.amount"
    ok = client.post(
        f"/api/v1/approvals/{approval['id']}/approve", headers=admin, json={"input": {"amount": 250}, "reason": "fine"}
    )
    assert ok.status_code == 200, ok.text
    again = client.post(f"/api/v1/approvals/{approval['id']}/reject", headers=admin)
    assert_error(again, 409, "CONFLICT")
    assert "already approved by" in again.json()["error"]["message"]
    done = _drive(client, settings, db, owner, run["id"], token="t#2")
    assert done["status"] == "completed" and done["output"]["gate"]["input"] == {"amount": 250}
    decided = client.get(f"/api/v1/approvals/{approval['id']}", headers=owner).json()
    assert decided["decision_input"] == {"amount": 250} and decided["decision_reason"] == "fine"


def test_task_approvals_name_the_task_and_agent_and_pending_lists_filter(client, settings, db, owner) -> None:
    agent = client.post("/api/v1/agents", headers=owner, json={"name": "Payer", "type": "ops"}).json()
    created = client.post(
        "/api/v1/tasks",
        headers=owner,
        json={"title": "Rotate keys", "priority": "P0", "payload": {"password": "pw", "host": "db1"}},
    )
    assert created.status_code == 201, created.text
    task = created.json()
    [approval] = client.get(f"/api/v1/approvals/pending?task_id={task['id']}", headers=owner).json()["approvals"]
    assert approval["task_id"] == task["id"] and approval["execution_id"] is None
    assert approval["context"]["preview"]["payload"] == {"password": "•••", "host": "db1"}
    assert client.get(f"/api/v1/approvals/pending?agent_id={agent['id']}", headers=owner).json()["approvals"] == []
    assert client.get("/api/v1/approvals/pending?priority=P3", headers=owner).json()["approvals"] == []
    soonest = client.post("/api/v1/approvals", headers=owner, json={"reason": "soon", "expires_in": 60}).json()
    by_expiry = client.get("/api/v1/approvals/pending?sort_by=expires_at", headers=owner).json()["approvals"]
    assert by_expiry[0]["id"] == soonest["id"]
    bad_schema = client.post("/api/v1/approvals", headers=owner, json={"reason": "x", "input_schema": {"type": 5}})
    assert_error(bad_schema, 422, "VALIDATION_ERROR")
    bad_filter = client.get("/api/v1/approvals/pending?expires_before=soon", headers=owner)
    assert_error(bad_filter, 422, "VALIDATION_ERROR")


def test_an_organizations_approval_notifies_its_owners_and_admins(client, owner) -> None:
    from tests.integration.test_agents import _user

    org = client.post("/api/v1/organizations", headers=owner, json={"name": "Payments"}).json()
    bob = _user(client, "bob")
    bob_id = client.get("/api/v1/users/me", headers=bob).json()["id"]
    carol = _user(client, "carol")
    carol_id = client.get("/api/v1/users/me", headers=carol).json()["id"]
    for user_id, role in ((bob_id, "admin"), (carol_id, "member")):
        added = client.post(
            f"/api/v1/organizations/{org['id']}/members", headers=owner, json={"user_id": user_id, "role": role}
        )
        assert added.status_code == 201, added.text
    created = client.post(
        "/api/v1/approvals",
        headers=owner,
        json={
            "reason": "Refund 40 EUR",
            "owner_type": "organization",
            "owner_id": org["id"],
            "description": "A *refund*",
        },
    )
    assert created.status_code == 201, created.text
    inbox = client.get("/api/v1/users/me/notifications", headers=bob).json()["notifications"]
    [note] = [n for n in inbox if n["type"] == "approval_requested"]
    assert note["title"] == "Approval requested: Refund 40 EUR" and note["data"]["approval_id"] == created.json()["id"]
    assert not [
        n
        for n in client.get("/api/v1/users/me/notifications", headers=carol).json()["notifications"]
        if n["type"] == "approval_requested"
    ]
    assert not [
        n
        for n in client.get("/api/v1/users/me/notifications", headers=owner).json()["notifications"]
        if n["type"] == "approval_requested"
    ]
