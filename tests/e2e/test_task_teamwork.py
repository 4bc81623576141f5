"""Tasks as teams use them, over HTTP through Serve against the live platform: tenants sharing an agent
take turns, an SLA breach fired by the reconciler raises the task's priority, and files travel through the
proxy."""

from __future__ import annotations

import secrets

import httpx

from tests.e2e.test_agent_actors import AGENTS, _deployed, _eventually

TASKS = "/api/v1/tasks"
RULES = "/api/v1/routing/rules"


def _account(http: httpx.Client) -> dict[str, str]:
    email = f"tenant-{secrets.token_hex(4)}@example.com"
    assert http.post("/api/v1/auth/register", json={"email": email, "password": "correct horse 1"}).status_code == 201
    login = http.post("/api/v1/auth/login", json={"email": email, "password": "correct horse 1"})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def test_a_tenants_flood_does_not_starve_another_tenant_on_a_shared_agent(http, owner, approver) -> None:
    kind = f"fair{secrets.token_hex(3)}"
    assert http.put(RULES, headers=approver, json={"rules": {kind: {"tags": [kind]}}}).status_code == 200
    shared = _deployed(http, approver, mode="external", type="dev", tags=[kind], is_public=True, max_concurrent_tasks=1)
    other = _account(http)
    flood = [http.post(TASKS, headers=owner, json={"type": kind, "title": f"a{i}"}).json()["id"] for i in range(8)]
    late = [http.post(TASKS, headers=other, json={"type": kind, "title": f"b{i}"}).json()["id"] for i in range(2)]
    mine = set(flood) | set(late)
    order: list[str] = []
    while len(order) < len(mine):
        # The platform's admin runs the shared agent's worker: it finishes whatever it was given.
        active = _eventually(
            lambda: http.get(f"{AGENTS}/{shared['id']}/tasks", headers=approver, params={"status": "active"}).json()[
                "tasks"
            ],
            timeout_s=30,
            what="the shared agent given a task",
        )
        assert len(active) == 1  # capacity 1
        task = active[0]
        if task["id"] in mine:
            order.append(task["id"])
        done = http.patch(f"{TASKS}/{task['id']}/status", headers=approver, json={"status": "completed"})
        assert done.status_code == 200, done.text
    http.put(RULES, headers=approver, json={"rules": {}})
    http.post(f"{AGENTS}/{shared['id']}/undeploy", headers=approver)
    # First come, first served would run the late tenant's tasks 9th and 10th; taking turns runs them early.
    positions = sorted(order.index(task_id) for task_id in late)
    assert positions[1] <= 4, f"late tenant's tasks ran at positions {positions} of {len(order)}"
    assert [task_id for task_id in order if task_id in flood] == flood  # each tenant's own FIFO is kept


def test_an_sla_breach_fires_an_event_and_raises_the_priority(http, owner, approver) -> None:
    kind = f"sla{secrets.token_hex(3)}"
    # No agent carries this tag, so the task stays pending past its SLA.
    assert http.put(RULES, headers=approver, json={"rules": {kind: {"tags": [kind]}}}).status_code == 200
    task = http.post(TASKS, headers=owner, json={"type": kind, "priority": "low", "slaTarget": 1}).json()
    breached = _eventually(
        lambda: (t := http.get(f"{TASKS}/{task['id']}", headers=owner).json())["sla_breached_at"] and t,
        timeout_s=30,
        what="SLA breach recorded",
    )
    assert breached["priority"] == "P2" and breached["status"] == "pending"
    events = http.get("/api/v1/events", headers=owner, params={"type": "task.sla_breached", "taskId": task["id"]})
    [event] = events.json()["events"]
    assert event["payload"]["previous_priority"] == "P3" and event["payload"]["sla_target"] == 1
    http.put(RULES, headers=approver, json={"rules": {}})
    http.delete(f"{TASKS}/{task['id']}", headers=owner)


def test_a_file_travels_through_the_proxy_and_back(http, owner) -> None:
    task = http.post(TASKS, headers=owner, json={"type": "docs", "priority": "P3"}).json()
    content = ("# Notes\n" + "line of text\n" * 200_000).encode()  # ~2.6 MB: over the JSON body limit
    uploaded = http.post(
        f"{TASKS}/{task['id']}/files", headers=owner, files={"file": ("notes.md", content, "text/markdown")}
    )
    assert uploaded.status_code == 201, uploaded.text
    download = http.get(uploaded.json()["download_url"], headers=owner)
    assert download.status_code == 200 and download.content == content
    http.delete(f"{TASKS}/{task['id']}", headers=owner)
