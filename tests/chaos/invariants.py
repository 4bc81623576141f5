"""The invariants a fault may not break, read from the database and the consumers (never from the API's
answers alone): each 2xx effect stored exactly once and nothing stored for a 503, every run terminal, no
task assigned twice, every event in the Redis stream and at the webhook, only 2xx or 503 + Retry-After."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, text

from tests.chaos.load import (
    EVENT_TYPE,
    Answer,
    Client,
    StreamReader,
    Subscriber,
    WebhookReceiver,
    Window,
    World,
    approve_if_waiting,
)

TERMINAL = ("completed", "failed", "cancelled", "timeout")
POLL_S = 0.5


# How a task of the load may end: done, or interrupted with its agent's process (the agent-actor fault).
DONE = ("completed", "interrupted")


@dataclass
class Snapshot:
    """The window's effects as the database and the consumers hold them."""

    tasks: list[tuple[str, str, str]] = field(default_factory=list)  # id, title, status
    runs: list[tuple[str, str, str, str | None]] = field(default_factory=list)  # id, marker, status, error
    events: list[dict[str, Any]] = field(default_factory=list)  # the owner's events since the window began
    in_stream: set[str] = field(default_factory=set)
    at_webhook: set[str] = field(default_factory=set)

    def unsettled(self) -> list[str]:
        """What is still on its way (empty: everything arrived)."""
        waiting = [f"task {title!r} {status}" for _, title, status in self.tasks if status not in DONE]
        waiting += [f"run {marker} {status}" for _, marker, status, _ in self.runs if status not in TERMINAL]
        for event in self.events:
            missing = [
                name
                for name, arrived in (
                    ("published", event["published_at"] is not None),
                    ("streamed", event["streamed_at"] is not None),
                    ("in the Redis stream", event["id"] in self.in_stream),
                    ("at the webhook", event["id"] in self.at_webhook),
                )
                if not arrived
            ]
            if missing:
                waiting.append(f"event {event['event_type']} {event['id']} not {', '.join(missing)}")
        return waiting


def snapshot(
    engine: Engine, world: World, window: Window, since: datetime, stream: StreamReader, receiver: WebhookReceiver
) -> Snapshot:
    prefix = f"{window.label}-%"
    with engine.connect() as conn:
        tasks = conn.execute(
            # A task its agent's process was running when it died is failed `interrupted: …`, as documented
            # (docs/architecture.md): an outcome, reported apart from a real failure.
            text(
                "SELECT id, title, CASE WHEN status = 'failed' AND error LIKE 'interrupted:%' THEN 'interrupted' "
                "ELSE status END FROM tasks WHERE owner_id = :owner AND title LIKE :title"
            ),
            {"owner": world.owner_id, "title": f"chaos {window.label} %"},
        ).all()
        runs = conn.execute(
            text(
                "SELECT id, input->>'marker', status, error FROM executions "
                "WHERE owner_id = :owner AND input->>'marker' LIKE :prefix"
            ),
            {"owner": world.owner_id, "prefix": prefix},
        ).all()
        events = conn.execute(
            text(
                "SELECT id, event_type, subject_id, published_at, streamed_at FROM events "
                "WHERE owner_id = :owner AND created_at >= :since"
            ),
            {"owner": world.owner_id, "since": since},
        ).mappings()
        events = [dict(row) for row in events]
    return Snapshot(
        [tuple(row) for row in tasks],
        [tuple(row) for row in runs],
        events,
        stream.refresh(),
        receiver.ids(),
    )


def settle(
    engine: Engine,
    world: World,
    window: Window,
    since: datetime,
    stream: StreamReader,
    receiver: WebhookReceiver,
    timeout_s: float,
) -> tuple[Snapshot, float]:
    """After the load stopped: approve the runs still waiting (as the load would have), then poll until
    every effect arrived or `timeout_s`; the last snapshot and the seconds it took."""
    started = time.monotonic()
    client = Client(world, window)
    open_gates = window.gated - set(window.approved.values())
    try:
        while True:
            for execution_id in list(open_gates):
                if approve_if_waiting(client, world, window, execution_id):
                    open_gates.discard(execution_id)
            current = snapshot(engine, world, window, since, stream, receiver)
            if (not current.unsettled() and not open_gates) or time.monotonic() - started > timeout_s:
                return current, time.monotonic() - started
            time.sleep(POLL_S)
    finally:
        client.close()


def violations(
    engine: Engine,
    world: World,
    window: Window,
    final: Snapshot,
    receiver: WebhookReceiver,
    subscribers: list[Subscriber],
    window_started: float,
    cut_in_flight: list[Answer],
) -> list[str]:
    """Every broken invariant, each with its evidence (empty: none). `cut_in_flight`: the requests the
    fault itself cut (in flight in a process it killed): no answer is possible for them."""
    problems: list[str] = []

    # During and after the fault the API answers 2xx, or 503 with Retry-After; nothing else.
    refused_upgrades = [a for s in subscribers for a in s.refused if a.at >= window_started]
    bad = [a for a in [*window.answers, *refused_upgrades] if not a.acceptable and a not in cut_in_flight]
    if bad:
        shown = "; ".join(
            f"{a.method} {a.route} -> {a.status} retry-after={a.retry_after} {a.detail!r}" for a in bad[:6]
        )
        problems.append(f"{len(bad)} answers neither 2xx nor 503 with Retry-After: {shown}")

    # Every 2xx task stored once, under the id answered; nothing stored for a 503.
    titles = Counter(title for _, title, _ in final.tasks)
    ids = {title: task_id for task_id, title, _ in final.tasks}
    for title, task_id in window.tasks.items():
        if titles[title] != 1 or ids.get(title) != task_id:
            problems.append(f"task {title!r} answered 2xx (id {task_id}) is stored {titles[title]} times")
    problems += [f"task {title!r} answered 503 but was stored" for title in window.tasks_refused if titles[title]]

    # No task assigned twice; each completed task assigned exactly once.
    task_ids = list(window.tasks.values())
    if task_ids:
        with engine.connect() as conn:
            assigned = dict(
                conn.execute(
                    text(
                        "SELECT subject_id, count(*) FROM events WHERE event_type = 'task.assigned' "
                        "AND subject_id IN :ids GROUP BY subject_id"
                    ).bindparams(bindparam("ids", expanding=True)),
                    {"ids": task_ids},
                ).all()
            )
        twice = {task_id: n for task_id, n in assigned.items() if n > 1}
        if twice:
            problems.append(f"tasks assigned more than once (task.assigned events): {twice}")
        never = [task_id for task_id in task_ids if task_id not in assigned]
        if never:
            problems.append(f"{len(never)} tasks never assigned, e.g. {never[:3]}")

    # Every task done (or interrupted with its agent's process), every run ended (and completed).
    unfinished = [f"{title!r}: {status}" for _, title, status in final.tasks if status not in DONE]
    if unfinished:
        problems.append(f"{len(unfinished)} tasks not completed: {unfinished[:5]}")
    runs = Counter(marker for _, marker, _, _ in final.runs)
    for marker, execution_id in window.runs.items():
        if runs[marker] != 1:
            problems.append(f"run {marker} answered 2xx ({execution_id}) is stored {runs[marker]} times")
    problems += [f"run {marker} answered 503 but was stored" for marker in window.runs_refused if runs[marker]]
    not_done = [
        f"{marker}: {status} {error or ''}".strip() for _, marker, status, error in final.runs if status != "completed"
    ]
    if not_done:
        problems.append(f"{len(not_done)} runs not completed: {not_done[:5]}")

    # Every published event stored once; nothing for a 503.
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT data->>'marker', count(*), min(id) FROM events WHERE event_type = :type "
                "AND owner_id = :owner AND data->>'marker' LIKE :prefix GROUP BY 1"
            ),
            {"type": EVENT_TYPE, "owner": world.owner_id, "prefix": f"{window.label}-%"},
        ).all()
        markers = {marker: (n, event_id) for marker, n, event_id in stored}
        for marker, event_id in window.events.items():
            if markers.get(marker, (0, None)) != (1, event_id):
                problems.append(f"event {marker} answered 2xx ({event_id}) is stored as {markers.get(marker)}")
        problems += [
            f"event {marker} answered 503 but was stored" for marker in window.events_refused if marker in markers
        ]

        # Each approval answered 2xx is decided once.
        if window.approved:
            rows = conn.execute(
                text(
                    "SELECT a.id, a.status, (SELECT count(*) FROM events e WHERE e.event_type = 'approval.approved' "
                    "AND e.subject_id = a.id) FROM approvals a WHERE a.id IN :ids"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": list(window.approved)},
            ).all()
            decided = {approval_id: (status, n) for approval_id, status, n in rows}
            for approval_id in window.approved:
                if decided.get(approval_id) != ("approved", 1):
                    problems.append(f"approval {approval_id} approved (2xx) is stored as {decided.get(approval_id)}")

    # Every event (all of the owner's since the window began) published, streamed, in the stream, at the
    # webhook, with a valid signature: at least once.
    late = [reason for reason in final.unsettled() if reason.startswith("event")]
    if late:
        problems.append(f"{len(late)} of {len(final.events)} events not delivered everywhere: {late[:5]}")
    if receiver.bad_signatures:
        problems.append(f"{receiver.bad_signatures} webhook deliveries with a bad signature")

    return problems


def websocket_probe(
    client: Client, world: World, window: Window, subscribers: list[Subscriber], timeout_s: float
) -> list[str]:
    """After the fault, each WebSocket subscriber (reconnected if its connection dropped) receives a new
    event: one is published every 2 s until each has one, or `timeout_s`. The problems (empty: none)."""
    deadline = time.monotonic() + timeout_s
    sent: set[str] = set()
    while time.monotonic() < deadline:
        marker = f"{window.label}-ws-{len(sent)}"
        response = client.request(
            "POST",
            "/api/v1/events/publish",
            "POST /events/publish",
            headers=world.owner,
            json={"event_type": EVENT_TYPE, "payload": {"marker": marker}},
        )
        if response is not None and response.is_success:
            window.events[marker] = response.json()["event_id"]
            sent.add(marker)
        until = min(deadline, time.monotonic() + 2)
        while time.monotonic() < until:
            if sent and all(subscriber.markers() & sent for subscriber in subscribers):
                return []
            time.sleep(0.1)
    return [
        f"WebSocket {s.name} received none of the {len(sent)} events published after the recovery "
        f"(connects {s.connects}, last drops {s.drops[-3:]})"
        for s in subscribers
        if not s.markers() & sent
    ]
