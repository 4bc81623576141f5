"""Working together on a task, on each real database: comments with mentions that notify, files uploaded
to the file store and downloaded, and SLA breaches that fire an event and raise the priority."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from core.clock import utcnow
from persistence.models import Event, Task
from services import routing
from services import tasks as tasks_service
from tests.integration.test_agents import _user
from tests.integration.test_auth_flow import assert_error

TASKS = "/api/v1/tasks"
NOTIFICATIONS = "/api/v1/users/me/notifications"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _me(client: TestClient, headers: dict) -> dict:
    return client.get("/api/v1/users/me", headers=headers).json()


def _task(client: TestClient, headers: dict, **body) -> dict:
    response = client.post(TASKS, headers=headers, json={"type": "feature", "title": "Dashboard", **body})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def team(client: TestClient) -> tuple[dict, dict, dict]:
    """An admin (first account), Alice and Bob in one organization, and Eve outside it."""
    _user(client, "root")
    alice, bob, eve = _user(client, "alice"), _user(client, "bob"), _user(client, "eve")
    org = client.post("/api/v1/organizations", headers=alice, json={"name": "Acme"}).json()
    added = client.post(
        f"/api/v1/organizations/{org['id']}/members", headers=alice, json={"email": "bob@example.com", "role": "member"}
    )
    assert added.status_code in (200, 201), added.text
    return (
        {"alice": alice, "bob": bob, "eve": eve},
        org,
        {n: _me(client, h)["id"] for n, h in (("alice", alice), ("bob", bob), ("eve", eve))},
    )


def test_a_mention_notifies_the_mentioned_member_who_marks_it_read(client, team) -> None:
    users, org, ids = team
    task = _task(client, users["alice"], owner_type="organization", owner_id=org["id"])
    comment = client.post(
        f"{TASKS}/{task['id']}/comments",
        headers=users["alice"],
        json={"content": "Bob, please review", "mentions": [ids["bob"], "BOB@example.com"]},
    )
    assert comment.status_code == 201, comment.text
    body = comment.json()
    assert body["mentions"] == [ids["bob"]] and body["author"] == ids["alice"] and body["task_id"] == task["id"]

    inbox = client.get(NOTIFICATIONS, headers=users["bob"]).json()
    assert inbox["unread_count"] == 1 and inbox["pagination"]["total"] == 1
    note = inbox["notifications"][0]
    assert note["type"] == "mention" and note["data"]["task_id"] == task["id"] and note["read"] is False
    assert client.get(NOTIFICATIONS, headers=users["alice"]).json()["notifications"] == []  # no self-notice

    assert_error(client.put(f"{NOTIFICATIONS}/{note['id']}/read", headers=users["alice"]), 404, "NOT_FOUND")
    read = client.put(f"{NOTIFICATIONS}/{note['id']}/read", headers=users["bob"])
    assert read.status_code == 200 and read.json()["read"] is True and read.json()["read_at"]
    assert client.get(f"{NOTIFICATIONS}?unread=true", headers=users["bob"]).json()["notifications"] == []

    detail = client.get(f"{TASKS}/{task['id']}?include=comments,history", headers=users["bob"]).json()
    assert [c["content"] for c in detail["comments"]] == ["Bob, please review"]
    # The list has the list envelope (docs/api.md "Pagination"), and a new comment's Location is where it is read back.
    second = client.post(f"{TASKS}/{task['id']}/comments", headers=users["bob"], json={"content": "done"})
    assert second.status_code == 201, second.text
    assert client.get(second.headers["Location"], headers=users["alice"]).json() == second.json()
    listed = client.get(f"{TASKS}/{task['id']}/comments", headers=users["alice"], params={"limit": 1, "page": 2}).json()
    assert [c["content"] for c in listed["comments"]] == ["done"]
    assert listed["pagination"]["total"] == 2 and listed["pagination"]["has_prev"] and listed["links"]["first"]
    assert_error(client.get(f"{TASKS}/{task['id']}/comments/no-such-id", headers=users["alice"]), 404, "NOT_FOUND")
    assert any(entry["action"] == "updated" for entry in detail["history"])


def test_a_mention_of_someone_who_cannot_see_the_task_is_refused_and_nothing_is_stored(client, team) -> None:
    users, _org, ids = team
    task = _task(client, users["alice"])  # Alice's own: Bob cannot see it
    for ref in (ids["bob"], ids["eve"], "nobody@example.com", "no-such-id"):
        refused = client.post(
            f"{TASKS}/{task['id']}/comments", headers=users["alice"], json={"content": "hi", "mentions": [ref]}
        )
        error = assert_error(refused, 422, "VALIDATION_ERROR")
        assert error["details"][0]["field"] == "mentions[0]"
    assert client.get(f"{TASKS}/{task['id']}/comments", headers=users["alice"]).json()["comments"] == []
    assert client.get(NOTIFICATIONS, headers=users["bob"]).json()["unread_count"] == 0
    # Someone who cannot see the task cannot comment on it either.
    assert_error(
        client.post(f"{TASKS}/{task['id']}/comments", headers=users["eve"], json={"content": "x"}), 404, "NOT_FOUND"
    )
    assert_error(
        client.post(f"{TASKS}/{task['id']}/comments", headers=users["alice"], json={"content": ""}),
        422,
        "VALIDATION_ERROR",
    )


def test_files_are_stored_checked_and_downloaded_as_attachments(client, settings, team) -> None:
    users, _org, _ids = team
    alice = users["alice"]
    task = _task(client, alice)
    url = f"{TASKS}/{task['id']}/files"
    uploaded = client.post(
        url,
        headers=alice,
        files={"file": ("../../etc/mock-up.png", PNG, "image/png")},
        data={"description": "UI mockup"},
    )
    assert uploaded.status_code == 201, uploaded.text
    record = uploaded.json()
    assert record["name"] == "mock-up.png" and record["size"] == len(PNG) and record["mime_type"] == "image/png"
    assert record["sha256"] == hashlib.sha256(PNG).hexdigest() and record["description"] == "UI mockup"
    assert uploaded.headers["location"] == record["download_url"]
    stored = list((settings.file_storage_dir / task["id"]).iterdir())
    assert [path.name for path in stored] == [record["id"]]  # named by the platform, not by the client

    download = client.get(record["download_url"], headers=alice)
    assert download.status_code == 200 and download.content == PNG
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert_error(client.get(record["download_url"], headers=users["eve"]), 404, "NOT_FOUND")
    assert_error(client.get(f"{url}/no-such-file", headers=alice), 404, "NOT_FOUND")

    text = client.post(url, headers=alice, files={"file": ("auth.tsx", b"export const x = 1;\n", "text/typescript")})
    assert text.status_code == 201, text.text
    listed = client.get(f"{TASKS}/{task['id']}?include=files", headers=alice).json()["files"]
    assert [item["name"] for item in listed] == ["mock-up.png", "auth.tsx"]

    client.delete(f"{TASKS}/{task['id']}", headers=alice)
    assert not (settings.file_storage_dir / task["id"]).exists()


@pytest.mark.parametrize(
    ("name", "content", "kind", "problem"),
    [
        ("page.html", b"<script>alert(1)</script>", "text/html", "text/html is not accepted"),
        ("logo.svg", b"<svg/>", "image/svg+xml", "is not accepted"),
        ("fake.png", b"MZ\x90\x00 not a png", "image/png", "does not match image/png"),
        ("notes.txt", b"\x00\x01binary", "text/plain", "binary"),
    ],
)
def test_refused_uploads_keep_nothing(client, settings, team, name, content, kind, problem) -> None:
    alice = team[0]["alice"]
    task = _task(client, alice)
    refused = client.post(f"{TASKS}/{task['id']}/files", headers=alice, files={"file": (name, content, kind)})
    error = assert_error(refused, 422, "VALIDATION_ERROR")
    assert problem in error["details"][0]["message"] and error["details"][0]["field"] == "file"
    folder = settings.file_storage_dir / task["id"]
    assert not folder.exists() or list(folder.iterdir()) == []
    listed = client.get(f"{TASKS}/{task['id']}/files", headers=alice).json()
    assert listed["files"] == [] and listed["pagination"]["total"] == 0 and listed["links"]["next"] is None


def test_an_upload_over_the_limit_answers_413_and_keeps_nothing(tmp_path, database_url, db) -> None:
    from serve_app.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, database_url, files={"max_upload_bytes": 4096})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        alice = _user(client, "alice")
        task = _task(client, alice)
        url = f"{TASKS}/{task['id']}/files"
        too_big = client.post(url, headers=alice, files={"file": ("big.png", PNG * 4, "image/png")})
        assert_error(too_big, 413, "PAYLOAD_TOO_LARGE")
        fits = client.post(url, headers=alice, files={"file": ("small.png", PNG[:2048], "image/png")})
        assert fits.status_code == 201, fits.text
        # Only upload routes take bodies over the 1 MiB limit.
        big_json = client.post(
            TASKS,
            headers={**alice, "Content-Type": "application/json"},
            content=b'{"type": "x", "pad": "' + b" " * (2 * 1024 * 1024) + b'"}',
        )
        assert_error(big_json, 413, "PAYLOAD_TOO_LARGE")
    folder = settings.file_storage_dir / task["id"]
    assert [path.name for path in folder.iterdir()] == [fits.json()["id"]]


def test_an_sla_breach_fires_once_and_raises_the_priority(client, db, team) -> None:
    alice = team[0]["alice"]
    task = _task(client, alice, priority="low", sla_target=60)
    other = _task(client, alice, priority="P2", sla_target=3600)
    with db.transaction() as session:
        assert tasks_service.breach_slas(session) == []  # not due yet
        session.execute(update(Task).where(Task.id == task["id"]).values(sla_due_at=utcnow() - timedelta(seconds=5)))
    with db.transaction() as session:
        assert tasks_service.breach_slas(session) == [task["id"]]
    with db.transaction() as session:
        assert tasks_service.breach_slas(session) == []  # once
    after = client.get(f"{TASKS}/{task['id']}", headers=alice).json()
    assert after["priority"] == "P2" and after["sla_breached_at"]
    assert client.get(f"{TASKS}/{other['id']}", headers=alice).json()["sla_breached_at"] is None
    with db.session() as session:
        fired = session.scalars(select(Event).where(Event.event_type == "task.sla_breached")).all()
    assert [(e.subject_id, e.data["previous_priority"], e.data["priority"]) for e in fired] == [
        (task["id"], "P3", "P2")
    ]
    # A new target restarts the clock.
    renewed = client.patch(f"{TASKS}/{task['id']}", headers=alice, json={"slaTarget": 7200}).json()
    assert renewed["sla_breached_at"] is None


def test_a_person_works_an_unassigned_task_by_hand_and_the_history_names_them(client, db, settings, team) -> None:
    users, _org, ids = team
    project = client.post("/api/v1/projects", headers=users["alice"], json={"name": "Site"}).json()
    for user, permissions in (("bob", ["tasks:read", "tasks:write"]), ("eve", ["tasks:read"])):
        added = client.post(
            f"/api/v1/projects/{project['id']}/members",
            headers=users["alice"],
            json={"user_id": ids[user], "role": "developer", "permissions": permissions},
        )
        assert added.status_code == 201, added.text
    task = _task(client, users["alice"], project_id=project["id"])
    path = f"{TASKS}/{task['id']}"

    # Eve sees the project's task but may not move it; Bob may work it, not rewrite it.
    assert client.get(path, headers=users["eve"]).status_code == 200
    assert_error(client.patch(path, headers=users["eve"], json={"status": "active"}), 404, "NOT_FOUND")
    assert_error(client.patch(path, headers=users["bob"], json={"title": "Mine now"}), 404, "NOT_FOUND")

    started = client.put(path, headers=users["bob"], json={"status": "active"})
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "in_progress" and started.json()["agent_id"] is None
    # The router no longer considers it: not queued, and a routing decision made before does not hold.
    with db.session() as session:
        assert task["id"] not in {queued.id for queued in routing.pending_tasks(session, clock_offset=0.0)}
    with db.transaction() as session:
        assert routing.assign_routed(session, task["id"], "any-agent", settings) is None

    done = client.patch(path, headers=users["bob"], json={"status": "completed", "actualHours": 7.5, "progress": 1.0})
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["actual_hours"], done.json()["progress"]) == ("completed", 7.5, 1.0)
    history = client.get(f"{path}?include=history", headers=users["alice"]).json()["history"]
    assert [(entry["action"], entry["from"], entry["to"], entry["user"]) for entry in history] == [
        ("created", None, "pending", ids["alice"]),
        ("updated", "pending", "in_progress", ids["bob"]),
        ("completed", "in_progress", "completed", ids["bob"]),
    ]

    # The owner finishes another one in one step: recorded as started and finished, by her.
    quick = _task(client, users["alice"])
    finished = client.patch(f"{TASKS}/{quick['id']}", headers=users["alice"], json={"status": "completed"})
    assert finished.json()["status"] == "completed" and finished.json()["progress"] == 1.0
    history = client.get(f"{TASKS}/{quick['id']}?include=history", headers=users["alice"]).json()["history"]
    assert [(entry["to"], entry["user"]) for entry in history if entry["from"]] == [
        ("in_progress", ids["alice"]),
        ("completed", ids["alice"]),
    ]


def test_a_task_awaiting_approval_cannot_be_moved_by_hand(client, team) -> None:
    users, _org, _ids = team
    task = _task(client, users["alice"], priority="critical")
    assert task["status"] == "awaiting_approval"
    for status in ("active", "completed"):
        assert_error(
            client.patch(f"{TASKS}/{task['id']}", headers=users["alice"], json={"status": status}),
            409,
            "INVALID_TRANSITION",
        )
    assert client.get(f"{TASKS}/{task['id']}", headers=users["alice"]).json()["status"] == "awaiting_approval"
