"""Paging iterators, resumable run streams, task watching and runs against a fake platform."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from orchestrator_sdk import AsyncClient, Client, OrchestratorClient, Page, RunFailed, models

from tests.sdk.fakes import API, DroppingStream, FakePlatform, execution, listing, sse, step, task


def _clients(fake: FakePlatform) -> tuple[Client, AsyncClient]:
    options = {"api_key": "ao_test", "transport": fake.transport(), "backoff": 0.001}
    return Client(API, **options), AsyncClient(API, **options)


def _paged_tasks(total: int, shift_once: bool = False) -> FakePlatform:
    fake, items = FakePlatform(), [task(f"t{i}") for i in range(total)]
    shifted = [False]

    @fake.route("GET", "/tasks")
    def tasks(request: httpx.Request) -> httpx.Response:
        page, limit = int(request.url.params["page"]), int(request.url.params["limit"])
        if shift_once and page == 2 and not shifted[0]:  # a new task arrived first: everything moved one down
            shifted[0] = True
            items.insert(0, task("new"))
        rows = list(items)
        return listing("tasks", rows[(page - 1) * limit : page * limit], page, limit, len(rows))

    return fake


def test_list_iterates_over_every_page_with_the_filters() -> None:
    fake = _paged_tasks(7)
    client, _ = _clients(fake)
    ids = [t.id for t in client.tasks.list(status="pending", tags=["a", "b"], limit=3)]
    assert ids == [f"t{i}" for i in range(7)]
    pages = [
        (r.url.params["page"], r.url.params["limit"], r.url.params["status"], r.url.params["tags"])
        for r in fake.requests
    ]
    assert pages == [("1", "3", "pending", "a,b"), ("2", "3", "pending", "a,b"), ("3", "3", "pending", "a,b")]


def test_list_skips_an_item_seen_on_an_earlier_page() -> None:
    client, _ = _clients(_paged_tasks(5, shift_once=True))
    ids = [t.id for t in client.tasks.list(limit=2)]
    assert ids == ["t0", "t1", "t2", "t3", "t4"]  # t1, moved onto page 2, is not given twice


def test_page_returns_one_page_with_its_envelope() -> None:
    client, _ = _clients(_paged_tasks(7))
    page = client.tasks.page(2, limit=3)
    assert isinstance(page, Page) and [t.id for t in page] == ["t3", "t4", "t5"]
    assert page.has_next and page.total == 7 and page.pagination["pages"] == 3
    assert isinstance(page[0], models.TaskOut) and page[0]["id"] == page[0].id == "t3"
    assert "<table>" in page._repr_html_() and "page 2 of 3" in page._repr_html_()


def test_async_list_iterates_and_awaits() -> None:
    _, client = _clients(_paged_tasks(5))

    async def main() -> tuple[list[str], list[str]]:
        streamed = [t.id async for t in client.tasks.list(limit=2)]
        awaited = [t.id for t in await client.tasks.list(limit=2)]
        return streamed, awaited

    streamed, awaited = asyncio.run(main())
    assert streamed == awaited == [f"t{i}" for i in range(5)]


RUN_EVENTS = [
    ("step", step(1, "in"), "1:0"),
    ("log", {"id": "l1", "level": "INFO", "message": "one"}, "1:1"),
    ("status", {"status": "running", "current_step": "add", "progress": 0.3}, "1:1"),
    ("step", step(2, "add"), "2:1"),
    ("log", {"id": "l2", "level": "INFO", "message": "two"}, "2:2"),
    ("step", step(3, "out"), "3:2"),
    ("status", {"status": "completed", "current_step": None, "progress": 1.0}, "3:2"),
    ("end", {"status": "completed"}, "3:2"),
]


def _streaming_platform(drops_after: list[int], honours_last_event_id: bool = True) -> FakePlatform:
    """The run's stream; connection k drops after `drops_after[k]` events. A server that honours
    Last-Event-ID continues after it (and sends the current status again, as the platform does)."""
    fake = FakePlatform()
    connections = [0]

    @fake.route("GET", "/executions/r1/stream")
    def stream(request: httpx.Request) -> httpx.Response:
        last = request.headers.get("Last-Event-ID")
        events = list(RUN_EVENTS)
        if last and honours_last_event_id:
            index = max(i for i, (_, _, eid) in enumerate(RUN_EVENTS) if eid == last and RUN_EVENTS[i][0] != "status")
            status = [e for e in RUN_EVENTS[: index + 1] if e[0] == "status"]
            events = status[-1:] + RUN_EVENTS[index + 1 :]
        k = connections[0]
        connections[0] += 1
        cut = drops_after[k] if k < len(drops_after) else len(events)
        chunks = [sse(*event) for event in events[:cut]]
        return httpx.Response(
            200, headers={"Content-Type": "text/event-stream"}, stream=DroppingStream(chunks, drop=cut < len(events))
        )

    fake.route("GET", "/executions/r1")(lambda r: httpx.Response(200, json=execution(steps=[step(1, "in")])))
    return fake


def _names(events) -> list[str]:
    return [f"{e.event}:{e.id}" for e in events]


EXPECTED = [f"{name}:{eid}" for name, _, eid in RUN_EVENTS]


@pytest.mark.parametrize("honours", [True, False])
def test_a_dropped_stream_resumes_from_the_last_event_id_without_loss_or_duplicates(honours) -> None:
    fake = _streaming_platform(drops_after=[2, 3, 1], honours_last_event_id=honours)
    client, _ = _clients(fake)
    assert _names(client.executions.stream("r1")) == EXPECTED
    sent = [r.headers.get("Last-Event-ID") for r in fake.calls("GET", "/executions/r1/stream")]
    assert sent[0] is None and sent[1] == "1:1" and len(sent) == 4
    assert not fake.calls("POST", "/workflows/w1/execute")  # never submitted again


def test_async_stream_resumes_too() -> None:
    fake = _streaming_platform(drops_after=[4, 1])
    _, client = _clients(fake)

    async def main() -> list:
        return [e async for e in client.executions.stream("r1")]

    assert _names(asyncio.run(main())) == EXPECTED


def test_stream_gives_up_after_max_reconnects() -> None:
    fake = _streaming_platform(drops_after=[0] * 10)
    client, _ = _clients(fake)
    with pytest.raises(Exception, match="dropped"):
        list(client.executions.stream("r1", max_reconnects=2))


def _watch_platform(states: list[dict]) -> FakePlatform:
    fake, answers = FakePlatform(), iter(states)
    fake.route("GET", "/tasks/t1")(lambda r: httpx.Response(200, json=task("t1", **next(answers))))
    return fake


def test_task_watch_maps_status_onto_progress_completed_and_error() -> None:
    states = [
        {"status": "pending"},
        {"status": "pending"},
        {"status": "in_progress", "progress": 0.5},
        {"status": "completed", "progress": 1.0, "result": {"ok": True}},
    ]
    client, _ = _clients(_watch_platform(states))
    updates = list(client.tasks.watch("t1", interval=0))
    assert [(u["type"], u["progress"]) for u in updates] == [("progress", 0.0), ("progress", 0.5), ("completed", 1.0)]
    assert updates[-1]["result"] == {"ok": True}

    client, _ = _clients(_watch_platform([{"status": "failed", "error": "boom"}]))
    assert [(u["type"], u["error"]) for u in client.tasks.watch("t1", interval=0)] == [("error", "boom")]


def test_the_api_guide_python_example_shape() -> None:
    """`OrchestratorClient(base_url=..., api_key=...)`, created outside the loop, used under asyncio.run."""
    fake = _watch_platform([{"status": "in_progress", "progress": 0.25}, {"status": "completed", "progress": 1.0}])
    fake.route("POST", "/tasks")(lambda r: httpx.Response(201, json=task("t1")))
    client = OrchestratorClient(base_url="http://fake", api_key="your-api-key", transport=fake.transport())
    seen: list[str] = []

    async def create_and_monitor_task() -> None:
        created = await client.tasks.create({"title": "Build user registration", "priority": "high"})
        seen.append(created["id"])
        async for update in client.tasks.watch(created["id"], interval=0):
            if update["type"] == "progress":
                seen.append(f"{update['progress'] * 100}%")
            elif update["type"] == "completed":
                seen.append("completed")
                break

    asyncio.run(create_and_monitor_task())
    assert seen == ["t1", "25.0%", "completed"]
    assert fake.requests[0].headers["X-API-Key"] == "your-api-key"


def test_run_wait_follows_the_stream_and_shows_progress(capsys) -> None:
    fake = _streaming_platform(drops_after=[3])
    fake.route("GET", "/workflows/w1")(lambda r: httpx.Response(200, json={"workflow_data": {"nodes": [1, 2, 3]}}))
    client, _ = _clients(fake)
    run = client.executions.run("r1").wait()
    assert run.status == "completed" and run.output == {"value": 42}
    assert "3/3" in capsys.readouterr().err  # tqdm's bar: steps done of total
    assert "<table>" in run._repr_html_() and "completed" in run._repr_html_()


def test_a_failed_run_raises_run_failed_with_the_step_and_error() -> None:
    fake = FakePlatform()
    fake.route("GET", "/executions/r1/stream")(
        lambda r: httpx.Response(200, content=sse("end", {"status": "failed"}, "2:0"))
    )
    failed = execution(
        status="failed",
        steps=[step(1, "in"), step(2, "boom", "failed", "ValueError: no")],
        error="node boom failed: ValueError: no",
        logs=[
            {
                "id": "l",
                "level": "ERROR",
                "message": "x",
                "node_id": "boom",
                "metadata": {"traceback": "Traceback ...\nValueError: no"},
                "timestamp": "2026-01-01T00:00:00Z",
            }
        ],
    )
    fake.route("GET", "/executions/r1")(lambda r: httpx.Response(200, json=failed))
    client, _ = _clients(fake)
    with pytest.raises(RunFailed) as caught:
        client.executions.run("r1").wait(progress=False)
    error = caught.value
    assert error.step == "boom" and error.error == "ValueError: no" and "ValueError: no" in error.traceback
    assert error.run.status == "failed" and "remote traceback" in str(error)


def test_execute_sends_only_the_options_given_and_returns_a_run() -> None:
    fake = FakePlatform()
    started = {"execution_id": "r1", "status": "pending", "workflow_id": "w1"}
    fake.route("POST", "/workflows/w1/execute")(lambda r: httpx.Response(201, json=started))
    client, aclient = _clients(fake)
    run = client.workflows.execute("w1", {"value": 1})
    assert run.id == "r1" and run.status == "pending"
    assert fake.requests[-1].read() == b'{"input_data":{"value":1}}'
    arun = asyncio.run(aclient.workflows.execute("w1", execution_options={"timeout": 5000}))
    assert arun.id == "r1" and b'"execution_options":{"timeout":5000}' in fake.requests[-1].read()


def test_an_idle_stream_is_opened_again_without_using_up_the_reconnects() -> None:
    """A run waiting on an approval sends nothing for a long time: read timeouts are not failures."""
    fake, connections = FakePlatform(), [0]

    @fake.route("GET", "/executions/r1/stream")
    def stream(request: httpx.Request) -> httpx.Response:
        connections[0] += 1
        if connections[0] <= 15:  # silent
            return httpx.Response(200, stream=DroppingStream([], drop=True, error=httpx.ReadTimeout))
        return httpx.Response(200, content=b"".join(sse(*event) for event in RUN_EVENTS))

    client, _ = _clients(fake)
    assert _names(client.executions.stream("r1", max_reconnects=2)) == EXPECTED


def test_wait_gives_up_at_its_timeout() -> None:
    fake = FakePlatform()
    fake.route("GET", "/executions/r1/stream")(
        lambda r: httpx.Response(200, stream=DroppingStream([], drop=True, error=httpx.ReadTimeout))
    )
    fake.route("GET", "/executions/r1")(lambda r: httpx.Response(200, json=execution(status="waiting")))
    client, aclient = _clients(fake)
    with pytest.raises(TimeoutError, match="still running"):
        client.executions.run("r1").wait(timeout=0.2, progress=False)
    with pytest.raises(TimeoutError, match="still running"):
        asyncio.run(aclient.executions.run("r1").wait(timeout=0.2, progress=False))
