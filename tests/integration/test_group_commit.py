"""Group commit (persistence/group_commit.py) of new tasks on each real database: concurrent requests share
a transaction, each still answered only after its own row is committed; a request whose checks fail, or
whose row breaks a constraint, fails alone."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError

from core import telemetry_setup
from core.batching import Batcher
from core.errors import ValidationFailed
from persistence.db import Database
from persistence.group_commit import GroupCommit
from persistence.models import Event, Task
from services.principal import Principal, Role
from services.tasks import NewTaskRequest, _new_task_defaults, create_tasks
from tests.integration.test_auth_flow import register


@pytest.fixture
def principal(client: TestClient) -> Principal:
    return Principal(user_id=register(client, "grouped@example.com")["id"], role=Role.user)


def _request(principal: Principal, title: str, **data) -> NewTaskRequest:
    return NewTaskRequest(principal, {"type": "general", "priority": "P3", "title": title, **data}, f"cid-{title}")


def _held(db: Database) -> tuple[GroupCommit, threading.Event, threading.Event]:
    """A group commit whose first transaction waits until released, so that others queue behind it."""
    started, release = threading.Event(), threading.Event()

    def write(session, requests):
        if not started.is_set():
            started.set()
            assert release.wait(10)
        return create_tasks(session, requests)

    return GroupCommit(db, write), started, release


async def _submit_behind_a_held_first(group, started, release, first, others):
    head = asyncio.ensure_future(group.submit(first))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    rest = [asyncio.ensure_future(group.submit(request)) for request in others]
    await asyncio.sleep(0)  # all queued while the first transaction is open
    release.set()
    return await asyncio.gather(head, *rest, return_exceptions=True)


def test_concurrent_requests_share_one_transaction_and_each_gets_its_committed_task(db, principal) -> None:
    group, started, release = _held(db)
    requests = [_request(principal, f"t{n}") for n in range(6)]
    results = asyncio.run(_submit_behind_a_held_first(group, started, release, requests[0], requests[1:]))

    assert (group.batches, group.items) == (2, 6)  # the first alone, then the five that waited for it
    assert [task.title for task in results] == [f"t{n}" for n in range(6)]
    with db.session() as session:
        stored = {task.id: task for task in session.scalars(select(Task))}
        events = {
            event.subject_id: event
            for event in session.scalars(select(Event).where(Event.event_type == "task.created"))
        }
    for task in results:
        assert stored[task.id].status == "pending" and stored[task.id].owner_id == principal.user_id
        assert events[task.id].correlation_id == f"cid-{task.title}"  # each request's own, not the group's


def test_a_request_whose_checks_fail_fails_alone(db, principal) -> None:
    group, started, release = _held(db)
    good, bad = _request(principal, "good"), _request(principal, "bad", project_id="no-such-project")
    results = asyncio.run(
        _submit_behind_a_held_first(group, started, release, _request(principal, "first"), [good, bad])
    )
    assert results[1].title == "good"
    assert isinstance(results[2], ValidationFailed) and results[2].details[0].field == "project_id"
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 2


def test_a_row_that_breaks_a_constraint_fails_alone_and_the_others_are_written(db, principal) -> None:
    group, started, release = _held(db)
    untitled = _request(principal, "x")
    untitled.data["title"] = None  # past the API's validation: NOT NULL refuses it
    requests = [_request(principal, "a"), untitled, _request(principal, "b")]
    results = asyncio.run(_submit_behind_a_held_first(group, started, release, _request(principal, "first"), requests))
    assert [getattr(result, "title", None) for result in results] == ["first", "a", None, "b"]
    assert isinstance(results[2], IntegrityError)
    with db.session() as session:
        assert sorted(session.scalars(select(Task.title))) == ["a", "b", "first"]


def test_a_value_the_database_refuses_fails_only_its_request(db, principal, database_url) -> None:
    group, started, release = _held(db)
    requests = [_request(principal, "a"), _request(principal, "nul\x00byte"), _request(principal, "b")]
    results = asyncio.run(_submit_behind_a_held_first(group, started, release, _request(principal, "first"), requests))
    assert [results[n].title for n in (0, 1, 3)] == ["first", "a", "b"]
    if database_url.startswith("postgresql"):  # text cannot hold NUL there; SQLite stores it
        assert isinstance(results[2], DataError)


def test_a_broken_batch_fails_its_requests_instead_of_leaving_them_waiting() -> None:
    broken = Batcher(lambda items: [])  # one outcome short of every batch

    async def submit_two():
        return await asyncio.wait_for(asyncio.gather(broken.submit(1), broken.submit(2), return_exceptions=True), 5)

    outcomes = asyncio.run(submit_two())
    assert all(isinstance(outcome, RuntimeError) and "outcomes for a batch" in str(outcome) for outcome in outcomes)


def test_a_request_cancelled_before_its_batch_starts_is_not_run() -> None:
    ran: list[list[int]] = []
    started, gate = threading.Event(), threading.Event()

    def run(items):
        ran.append(list(items))
        started.set()
        gate.wait(5)
        return list(items)

    batcher = Batcher(run)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(1))
        assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)  # the first batch runs
        cancelled, kept = asyncio.ensure_future(batcher.submit(2)), asyncio.ensure_future(batcher.submit(3))
        await asyncio.sleep(0)
        cancelled.cancel()
        gate.set()
        return await first, await kept

    assert asyncio.run(scenario()) == (1, 3)
    assert ran == [[1], [3]]


def test_a_grouped_task_gets_the_model_defaults_the_orm_would_give(db, principal) -> None:
    """The group's Core insert fills the columns a request leaves out from the model's own defaults."""
    [task] = create_tasks_in(db, [_request(principal, "defaults")])
    with db.transaction() as session:
        by_orm = Task(
            title="orm", type="general", priority="P3", status="pending", owner_type="user", owner_id=principal.user_id
        )
        session.add(by_orm)
        session.flush()
        stored = session.get(Task, task.id)
        for column in (
            "progress",
            "is_public",
            "payload",
            "meta",
            "tags",
            "requirements",
            "description",
            "acceptance_criteria",
            "result",
            "agent_id",
            "sla_due_at",
            "assigned_at",
        ):
            assert getattr(stored, column) == getattr(by_orm, column), column
        assert stored.status == "pending"
    first, second = _new_task_defaults(), _new_task_defaults()
    assert first["tags"] == [] and first["tags"] is not second["tags"]  # a fresh list for every row


def create_tasks_in(db: Database, requests: list[NewTaskRequest]) -> list[Task]:
    with db.transaction() as session:
        return create_tasks(session, requests)


def test_traced_the_group_is_a_span_linked_both_ways_with_every_request_it_carries(db, principal) -> None:
    exporter = InMemorySpanExporter()
    tracer = telemetry_setup.install(exporter, service="orchestrator-api", batch=False).get_tracer("test")
    group, started, release = _held(db)

    async def traced(request: NewTaskRequest):
        with tracer.start_as_current_span(f"request {request.data['title']}"):
            return await group.submit(request)

    async def scenario():
        head = asyncio.ensure_future(traced(_request(principal, "a")))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        rest = [asyncio.ensure_future(traced(_request(principal, title))) for title in "bcd"]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(head, *rest)

    try:
        asyncio.run(scenario())
    finally:
        telemetry_setup.reset()
    spans = {span.name: span for span in exporter.get_finished_spans() if span.name.startswith("request")}
    [group_span] = [
        span
        for span in exporter.get_finished_spans()
        if span.name == "group_commit" and span.attributes["orchestrator.batch_size"] == 3
    ]
    carried = [spans[f"request {title}"] for title in "bcd"]
    assert group_span.parent.span_id == carried[0].context.span_id  # in the first carried request's trace
    assert {link.context.span_id for link in group_span.links} == {span.context.span_id for span in carried}
    for span in carried[1:]:  # the others' traces lead to it
        assert [link.context.span_id for link in span.links] == [group_span.context.span_id]
