"""The web console in headless Chromium (docs/console.md), against the app on a real port: sign-in, an
approval arriving live over the WebSocket, approving with input and rejecting with a reason (the runs end
accordingly), a second approver told who decided first, markup shown as text, tenants kept apart, 375 px.

Accounts: `root` (the platform admin, unused in the browser), `dev` (starts the runs of the organization
Acme), `alice` and `bob` (Acme's approvers), `mallory` (another tenant).
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import time
from typing import Any

import pytest

from tests.browser.conftest import FIX, PASSWORD, Platform, screenshot

pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright for Python (in the dev extra)")
from playwright.sync_api import expect

SCHEMA = {"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"]}
GATE = {"reason": "Ship it?", "description": "Deploy **v2**", "input_schema": SCHEMA}


@pytest.fixture(scope="module")
def acme(platform: Platform) -> dict[str, Any]:
    """Acme: `dev` owns it, `alice` and `bob` are members; its agent has a workflow with an approval node.
    `mallory`, another tenant, has the same workflow of her own."""
    org = platform.call("POST", "/api/v1/organizations", "dev", 201, json={"name": "Acme"})
    for member in ("alice", "bob"):
        platform.user(member)
        platform.call(
            "POST", f"/api/v1/organizations/{org['id']}/members", "dev", 201,
            json={"email": f"{member}@example.com", "role": "member"},
        )  # fmt: skip
    agent = platform.call(
        "POST", "/api/v1/agents", "dev", 201,
        json={"name": "Release bot", "description": "Ships releases",
              "owner_type": "organization", "owner_id": org["id"]},
    )  # fmt: skip
    return {"org": org, "agent": agent, "workflow": _gated_workflow(platform, "dev", agent["id"])}


def _gated_workflow(platform: Platform, who: str, agent_id: str, gate: dict | None = None) -> dict:
    nodes = [
        {"id": "in", "type": "input"},
        {"id": "gate", "type": "approval", "config": gate or GATE},
        {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}},
        {"id": "out", "type": "output"},
    ]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    body = {"name": "Release", "workflow_data": {"nodes": nodes, "edges": edges, "settings": {}}}
    return platform.call("POST", f"/api/v1/agents/{agent_id}/workflows", who, 201, json=body)


def _waiting_run(platform: Platform, who: str, workflow: dict, value: int = 1) -> dict:
    """Start a run and drive it until it waits at its approval node; the run and its approval."""
    started = platform.call(
        "POST", f"/api/v1/workflows/{workflow['id']}/execute", who, 201, json={"input_data": {"value": value}}
    )
    assert platform.drive(started["execution_id"]) == "waiting"
    run = platform.call("GET", f"/api/v1/executions/{started['execution_id']}", who)
    return {"run": run, "approval_id": run["waiting_on"]["id"]}


def _sign_in(page: Any, platform: Platform, name: str) -> None:
    platform.user(name)
    page.goto("/console")
    page.fill("#login-email", f"{name}@example.com")
    page.fill("#login-password", PASSWORD)
    page.click("#login button[type=submit]")
    expect(page.locator("#who")).to_have_text(f"{name}@example.com")
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=10_000)


def _card(page: Any, approval_id: str) -> Any:
    return page.locator(f'article.approval[data-approval-id="{approval_id}"]')


def test_sign_in_keeps_only_the_refresh_token_resumes_and_signs_out(new_page, platform: Platform) -> None:
    platform.user("alice")
    page = new_page()
    page.goto("/console")
    expect(page.locator("#login")).to_be_visible()
    # A wrong password: the API's message and its correlation id are shown.
    page.fill("#login-email", "alice@example.com")
    page.fill("#login-password", "not-the-password")
    page.click("#login button[type=submit]")
    expect(page.locator("#errors .error")).to_contain_text("Invalid email or password")
    expect(page.locator("#errors .cid")).to_contain_text(re.compile(r"correlation id \S+"))
    # With the keyboard only.
    page.fill("#login-password", "")
    page.focus("#login-password")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_have_text("alice@example.com")
    expect(page.locator("#nav")).to_be_visible()
    stored = page.evaluate("() => ({session: {...sessionStorage}, local: {...localStorage}})")
    assert list(stored["session"]) == ["orchestrator.console.refresh"] and stored["local"] == {}
    assert stored["session"]["orchestrator.console.refresh"].count(".") == 2  # a JWT, the refresh one
    # A reload resumes from the refresh token (rotated: the stored one changes).
    page.reload()
    expect(page.locator("#who")).to_have_text("alice@example.com")
    rotated = page.evaluate("() => sessionStorage.getItem('orchestrator.console.refresh')")
    assert rotated and rotated != stored["session"]["orchestrator.console.refresh"]
    page.click("#signout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    # The spent login is revoked: its refresh token no longer works.
    refreshed = platform.http.post("/api/v1/auth/refresh", json={"refresh_token": rotated})
    assert refreshed.status_code == 401


def test_an_approval_arrives_live_and_approving_with_input_completes_the_run(
    new_page, platform: Platform, acme: dict
) -> None:
    page = new_page()
    _sign_in(page, platform, "alice")
    expect(page.locator("#inbox")).to_be_attached()
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads

    waiting = _waiting_run(platform, "dev", acme["workflow"])
    card = _card(page, waiting["approval_id"])
    expect(card).to_be_visible(timeout=10_000)
    assert page.evaluate("() => window.__sameDocument === true"), "the card came without a reload"
    expect(card.locator("h2")).to_have_text("Ship it?")
    expect(card.locator(".context strong")).to_have_text("v2")  # the description's **bold**, as a node
    expect(card.locator(".context")).to_have_text("Deploy v2")
    expect(card.locator(".countdown")).to_have_text(re.compile(r"^in \d+(d|h|m)"))
    expect(card.locator("pre.json")).to_contain_text('"value": 1')
    expect(card.locator(f'a[href="#/runs/{waiting["run"]["id"]}"]')).to_be_visible()
    expect(card).to_contain_text(platform.users["dev"]["id"])  # the requester
    screenshot(page, "console-inbox.png")

    # The note is required by the approval's input schema: the browser refuses an empty one.
    card.get_by_role("button", name="Approve").click()
    expect(card).to_be_visible()
    assert platform.call("GET", f"/api/v1/approvals/{waiting['approval_id']}", "alice")["status"] == "pending"
    card.get_by_label("note").fill("ship after lunch")
    card.get_by_role("button", name="Approve").click()
    expect(card).to_have_count(0)
    decided = platform.call("GET", f"/api/v1/approvals/{waiting['approval_id']}", "alice")
    assert decided["status"] == "approved" and decided["decision_input"] == {"note": "ship after lunch"}
    assert decided["decided_by"] == platform.users["alice"]["id"]

    page.goto(f"/console#/runs/{waiting['run']['id']}")
    expect(page.locator("#run-status")).to_have_text("pending")
    assert platform.drive(waiting["run"]["id"]) == "completed"
    # The run page follows the run's stream: no reload needed.
    expect(page.locator("#run-status")).to_have_text("completed", timeout=10_000)
    expect(page.locator('#run-nodes li[data-node="gate"]')).to_contain_text("gate")
    expect(page.locator('#run-nodes li[data-node="out"] .badge')).to_have_text("completed")
    expect(page.locator("#run-timeline")).to_contain_text("ended completed")
    expect(page.locator(".result pre.json")).to_contain_text('"note": "ship after lunch"')
    expect(page.get_by_role("button", name="Cancel run")).to_be_hidden()
    screenshot(page, "console-run.png")


def test_rejecting_with_a_reason_fails_the_run(new_page, platform: Platform, acme: dict) -> None:
    page = new_page()
    _sign_in(page, platform, "alice")
    waiting = _waiting_run(platform, "dev", acme["workflow"], value=5)
    card = _card(page, waiting["approval_id"])
    expect(card).to_be_visible(timeout=10_000)
    card.get_by_label("Reason for rejecting").fill("not on a Friday")
    card.get_by_role("button", name="Reject").click()
    expect(card).to_have_count(0)
    assert platform.drive(waiting["run"]["id"]) == "failed"
    page.goto(f"/console#/runs/{waiting['run']['id']}")
    expect(page.locator("#run-status")).to_have_text("failed")
    expect(page.locator(".run-error")).to_contain_text("not on a Friday")


def test_a_second_approver_is_told_who_decided_first(new_page, platform: Platform, acme: dict) -> None:
    alice, bob = new_page(), new_page()

    # Bob's live connection is a stand-in that answers the protocol but never delivers events: his card stays
    # on screen after Alice's decision, as it does when two people click at the same moment.
    def quiet(ws: Any) -> None:
        def answer(message: str | bytes) -> None:
            kind = json.loads(message).get("type")
            if kind == "auth":
                ws.send(json.dumps({"type": "authenticated", "data": {}}))
            elif kind == "subscribe":
                ws.send(json.dumps({"type": "subscribed", "data": {}}))

        ws.on_message(answer)

    bob.route_web_socket(re.compile(r".*/api/v1/ws$"), quiet)
    _sign_in(alice, platform, "alice")
    _sign_in(bob, platform, "bob")
    waiting = _waiting_run(platform, "dev", acme["workflow"])
    expect(_card(alice, waiting["approval_id"])).to_be_visible(timeout=10_000)
    bob.reload()
    bob_card = _card(bob, waiting["approval_id"])
    expect(bob_card).to_be_visible()

    alice_card = _card(alice, waiting["approval_id"])
    alice_card.get_by_label("note").fill("mine")
    alice_card.get_by_role("button", name="Approve").click()
    expect(alice_card).to_have_count(0)

    bob_card.get_by_label("note").fill("me too")
    bob_card.get_by_role("button", name="Approve").click()
    message = bob_card.locator(".card-message")
    expect(message).to_contain_text(f"already approved by {platform.users['alice']['id']}")
    expect(message.locator(".cid")).to_contain_text("correlation id")
    bob_card.get_by_role("button", name="Dismiss").click()
    expect(bob_card).to_have_count(0)
    approval = platform.call("GET", f"/api/v1/approvals/{waiting['approval_id']}", "bob")
    assert approval["decision_input"] == {"note": "mine"}


def test_markup_in_a_task_title_is_shown_as_text(new_page, platform: Platform, acme: dict) -> None:
    title = "<img src=x onerror=alert(1)>"
    platform.call("POST", "/api/v1/tasks", "alice", 201, json={"type": "bugfix", "title": title})
    page = new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    _sign_in(page, platform, "alice")
    page.click("#nav a[href='#/tasks']")
    task = page.locator("#board li.task", has_text=title)
    expect(task).to_be_visible()
    expect(task.locator(".title")).to_have_text(title)
    assert page.locator("#view img").count() == 0
    assert page.locator("img").count() == 0
    page.wait_for_timeout(300)
    assert dialogs == []
    expect(page.locator("#queue dl")).to_be_visible()  # the queue figures from GET /stats
    # The helpers behind the cards: a past deadline reads "expired"; markdown keeps markup as text.
    shown = page.evaluate(
        """async () => {
            const dom = await import('/console/assets/dom.js');
            const md = dom.markdown('**a** <b>x</b>\\n\\n<script>alert(1)</script>');
            return {past: dom.countdown(new Date(Date.now() - 1000).toISOString()),
                    soon: dom.countdown(new Date(Date.now() + 65000).toISOString()),
                    paragraphs: md.querySelectorAll('p').length, bold: md.querySelectorAll('strong').length,
                    elements: md.querySelectorAll('b, script').length, text: md.textContent};
        }"""
    )
    assert shown["past"] == "expired" and re.fullmatch(r"in 1m 0[45]s", shown["soon"]), shown
    assert shown["paragraphs"] == 2 and shown["bold"] == 1 and shown["elements"] == 0
    assert "<b>x</b>" in shown["text"] and "<script>" in shown["text"]


def test_another_tenants_approval_never_appears(new_page, platform: Platform, acme: dict) -> None:
    mallory_agent = platform.call("POST", "/api/v1/agents", "mallory", 201, json={"name": "Mallory's bot"})
    theirs = _gated_workflow(platform, "mallory", mallory_agent["id"], {**GATE, "reason": "Mallory's secret"})
    page = new_page()
    _sign_in(page, platform, "alice")
    foreign = _waiting_run(platform, "mallory", theirs)
    own = _waiting_run(platform, "dev", acme["workflow"])  # relayed after Mallory's
    expect(_card(page, own["approval_id"])).to_be_visible(timeout=10_000)
    assert _card(page, foreign["approval_id"]).count() == 0
    assert "Mallory's secret" not in page.locator("#inbox").inner_text()
    page.reload()
    expect(_card(page, own["approval_id"])).to_be_visible()
    assert _card(page, foreign["approval_id"]).count() == 0
    # Her run is not visible either.
    page.goto(f"/console#/runs/{foreign['run']['id']}")
    expect(page.locator("#errors .error")).to_contain_text("not found", ignore_case=True)


def test_agents_view_and_narrow_screens(new_page, platform: Platform, acme: dict) -> None:
    page = new_page()
    _sign_in(page, platform, "alice")
    page.click("#nav a[href='#/agents']")
    card = page.locator(f'article.agent[data-agent-id="{acme["agent"]["id"]}"]')
    expect(card).to_contain_text("Release bot")
    expect(card.locator(".badge").first).to_have_text("draft")
    card.get_by_role("button", name="Recent tasks").click()
    expect(card.locator(".detail")).to_contain_text("No tasks.")
    screenshot(page, "console-agents.png")

    narrow = new_page(375, 740)
    _sign_in(narrow, platform, "alice")
    for hash_ in ("#/inbox", "#/runs", "#/agents", "#/tasks"):
        narrow.goto(f"/console{hash_}")
        expect(narrow.locator("#view h1")).to_be_visible()
        width = narrow.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, (hash_, width)


def test_time_from_the_wait_to_the_card(new_page, platform: Platform, acme: dict) -> None:
    """Measured, not asserted: from `execute` returning at the approval node to the card being visible."""
    page = new_page()
    _sign_in(page, platform, "alice")
    times = []
    for _ in range(20):
        started = platform.call(
            "POST", f"/api/v1/workflows/{acme['workflow']['id']}/execute", "dev", 201, json={"input_data": {}}
        )
        assert platform.drive(started["execution_id"]) == "waiting"
        waited = time.perf_counter()
        page.wait_for_selector(f'article.approval a[href="#/runs/{started["execution_id"]}"]', timeout=10_000)
        times.append((time.perf_counter() - waited) * 1000)
        run = platform.call("GET", f"/api/v1/executions/{started['execution_id']}", "alice")
        platform.call("POST", f"/api/v1/approvals/{run['waiting_on']['id']}/reject", "alice", params={"reason": "x"})
    print(
        f"\nwait -> card visible over {len(times)} trials: p50 {statistics.median(times):.0f} ms, "
        f"min {min(times):.0f} ms, max {max(times):.0f} ms"
    )
