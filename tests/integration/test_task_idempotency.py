"""`POST /tasks` with an `Idempotency-Key`, on each real database: a retry answers the task the first request
created, concurrent twins create one task, another body under the same key is refused, and keys are the
caller's own and expire."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from core.clock import utcnow
from persistence.db import Database
from persistence.models import Event, IdempotencyKey, Task
from tests.integration.test_agents import _user
from tests.integration.test_auth_flow import assert_error

TASKS = "/api/v1/tasks"


def _stored(db: Database, title: str) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Task).where(Task.title == title))


def _created_events(db: Database, task_id: str) -> int:
    with db.session() as session:
        query = (
            select(func.count())
            .select_from(Event)
            .where(Event.subject_id == task_id, Event.event_type == "task.created")
        )
        return session.scalar(query)


def test_a_retry_with_the_same_key_answers_the_task_the_first_request_created(client: TestClient, db) -> None:
    alice = _user(client, "alice")
    body = {"type": "bugfix", "title": "Retried", "payload": {"n": 1}}
    first = client.post(TASKS, headers={**alice, "Idempotency-Key": "order-17"}, json=body)
    again = client.post(TASKS, headers={**alice, "Idempotency-Key": "order-17"}, json=body)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Location"] == f"{TASKS}/{first.json()['id']}"
    assert _stored(db, "Retried") == 1 and _created_events(db, first.json()["id"]) == 1
    # Without a key, the same body is another task.
    assert client.post(TASKS, headers=alice, json=body).json()["id"] != first.json()["id"]


def test_the_same_key_with_another_body_is_refused_and_nothing_is_stored(client: TestClient, db) -> None:
    alice = _user(client, "alice")
    headers = {**alice, "Idempotency-Key": "k-1"}
    client.post(TASKS, headers=headers, json={"type": "bugfix", "title": "One"})
    error = assert_error(
        client.post(TASKS, headers=headers, json={"type": "bugfix", "title": "Two"}), 422, "VALIDATION_ERROR"
    )
    assert error["details"][0]["field"] == "Idempotency-Key"
    assert _stored(db, "Two") == 0
    for bad in ("", "x" * 256, "has space"):
        response = client.post(
            TASKS, headers={**alice, "Idempotency-Key": bad}, json={"type": "bugfix", "title": "Bad"}
        )
        assert_error(response, 422, "VALIDATION_ERROR")
    assert _stored(db, "Bad") == 0


def test_concurrent_twins_create_one_task(client: TestClient, db) -> None:
    alice = _user(client, "alice")
    headers = {**alice, "Idempotency-Key": "twin"}
    body = {"type": "bugfix", "title": "Twin", "priority": "P2"}
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: client.post(TASKS, headers=headers, json=body), range(6)))
    assert {answer.status_code for answer in answers} == {201}, [answer.text for answer in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert sum(answer.headers.get("Idempotent-Replayed") == "true" for answer in answers) == 5
    assert _stored(db, "Twin") == 1


def test_keys_are_the_callers_own_and_expire(client: TestClient, db, settings) -> None:
    alice, bob = _user(client, "alice"), _user(client, "bob")
    body = {"type": "bugfix", "title": "Mine"}
    mine = client.post(TASKS, headers={**alice, "Idempotency-Key": "shared"}, json=body).json()
    theirs = client.post(TASKS, headers={**bob, "Idempotency-Key": "shared"}, json=body).json()
    assert mine["id"] != theirs["id"] and theirs["owner_id"] != mine["owner_id"]
    # Past its time the key is forgotten: the same request creates anew, and the key then names the new task.
    with db.transaction() as session:
        old = utcnow() - timedelta(seconds=settings.api.idempotency_ttl_s + 1)
        session.execute(update(IdempotencyKey).values(created_at=old))
    later = client.post(TASKS, headers={**alice, "Idempotency-Key": "shared"}, json=body)
    assert later.status_code == 201 and later.json()["id"] != mine["id"] and "Idempotent-Replayed" not in later.headers
    again = client.post(TASKS, headers={**alice, "Idempotency-Key": "shared"}, json=body)
    assert again.json()["id"] == later.json()["id"]
