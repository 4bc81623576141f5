"""The chaos suite's load: a few threads of real clients, bounded in requests and time, that record every
answer the API gives, and the consumers the invariants are read from (a webhook receiver, WebSocket
subscribers, the Redis stream).

Each request carries a unique marker (a task's title, an event's and a run's `marker`), so that the
checker can count its effect in the database, whatever the API answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import redis
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

# Bounds: per window, per thread. The pacing keeps the whole load to ~15 requests/s on 2 shared cores.
MAX_REQUESTS_PER_THREAD = 400
TASK_PAUSE_S = 0.15
EVENT_PAUSE_S = 0.2
RUN_PAUSE_S = 0.5
REQUEST_TIMEOUT_S = 20.0
EVENT_TYPE = "chaos.load"


@dataclass
class Answer:
    """One request and what came back: a status with its headers, or no answer (`status` None)."""

    at: float  # when the answer (or the failure) came, monotonic
    method: str
    route: str
    status: int | None
    retry_after: str | None = None
    detail: str = ""
    sent: float = 0.0  # when the request went out, monotonic

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def acceptable(self) -> bool:
        """2xx, or 503 with Retry-After: what the API may answer during a fault."""
        return self.ok or (self.status == 503 and bool(self.retry_after))


@dataclass
class World:
    """What the load works with, set up once per chaos module."""

    base_url: str
    owner: dict[str, str]
    owner_id: str
    approver: dict[str, str]
    agent_id: str
    approval_workflow: str
    sleep_workflow: str


@dataclass
class Window:
    """Everything one fault's load did: every answer, and the effects the 2xx answers promised."""

    label: str
    answers: list[Answer] = field(default_factory=list)
    tasks: dict[str, str] = field(default_factory=dict)  # title -> id, 2xx
    tasks_refused: set[str] = field(default_factory=set)  # titles answered 503 (nothing may be stored)
    events: dict[str, str] = field(default_factory=dict)  # marker -> event id, 2xx
    event_times: dict[str, float] = field(default_factory=dict)  # marker -> when its 2xx came (monotonic)
    events_refused: set[str] = field(default_factory=set)
    runs: dict[str, str] = field(default_factory=dict)  # marker -> execution id, 2xx
    runs_refused: set[str] = field(default_factory=set)
    gated: set[str] = field(default_factory=set)  # execution ids of the runs that wait for an approval
    approved: dict[str, str] = field(default_factory=dict)  # approval id -> execution id, 2xx
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for answer in self.answers:
            counts["2xx" if answer.ok else "503" if answer.status == 503 else "other"] += 1
        return counts


class Client:
    """httpx with every answer recorded in the window (no retries: a retry would hide what was answered)."""

    def __init__(self, world: World, window: Window) -> None:
        self.http = httpx.Client(base_url=world.base_url, timeout=REQUEST_TIMEOUT_S)
        self.window = window

    def request(self, method: str, url: str, route: str, **kwargs: Any) -> httpx.Response | None:
        sent = time.monotonic()
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}"
            self.window.record(Answer(time.monotonic(), method, route, None, detail=detail, sent=sent))
            return None
        self.window.record(
            Answer(
                time.monotonic(),
                method,
                route,
                response.status_code,
                response.headers.get("retry-after"),
                "" if response.is_success else response.text[:300],
                sent,
            )
        )
        return response

    def close(self) -> None:
        self.http.close()


class Load:
    """Task creation, event publishing, and workflow runs (half wait for an approval that another admin
    gives), each in a thread of its own, until `stop()` or their request bound."""

    def __init__(self, world: World, window: Window) -> None:
        self.world = world
        self.window = window
        self.token = secrets.token_hex(3)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._guarded, args=(loop,), daemon=True, name=f"chaos-{loop.__name__}")
            for loop in (self._tasks, self._events, self._runs)
        ]
        self.crashes: list[str] = []

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_S * 2)
        assert not any(thread.is_alive() for thread in self._threads), "a load thread did not stop"

    def _guarded(self, loop: Any) -> None:
        client = Client(self.world, self.window)
        try:
            loop(client)
        except Exception as exc:  # a bug of the load itself: the test reports it
            self.crashes.append(f"{loop.__name__}: {type(exc).__name__}: {exc}")
        finally:
            client.close()

    def _tasks(self, client: Client) -> None:
        for n in range(MAX_REQUESTS_PER_THREAD):
            if self._stop.is_set():
                return
            title = f"chaos {self.window.label} {self.token} task {n}"
            body = {"title": title, "type": "bugfix", "payload": {"marker": title}}
            response = client.request("POST", "/api/v1/tasks", "POST /tasks", headers=self.world.owner, json=body)
            if response is not None and response.is_success:
                self.window.tasks[title] = response.json()["id"]
            elif response is not None and response.status_code == 503:
                self.window.tasks_refused.add(title)
            self._stop.wait(TASK_PAUSE_S)

    def _events(self, client: Client) -> None:
        for n in range(MAX_REQUESTS_PER_THREAD):
            if self._stop.is_set():
                return
            marker = f"{self.window.label}-{self.token}-event-{n}"
            body = {"event_type": EVENT_TYPE, "payload": {"marker": marker}}
            response = client.request(
                "POST", "/api/v1/events/publish", "POST /events/publish", headers=self.world.owner, json=body
            )
            if response is not None and response.is_success:
                self.window.events[marker] = response.json()["event_id"]
                self.window.event_times[marker] = time.monotonic()
            elif response is not None and response.status_code == 503:
                self.window.events_refused.add(marker)
            self._stop.wait(EVENT_PAUSE_S)

    def _runs(self, client: Client) -> None:
        waiting: set[str] = set()  # runs that will wait for an approval, not yet approved
        for n in range(MAX_REQUESTS_PER_THREAD):
            if self._stop.is_set():
                return
            marker = f"{self.window.label}-{self.token}-run-{n}"
            gated = n % 2 == 0
            workflow = self.world.approval_workflow if gated else self.world.sleep_workflow
            data = {"marker": marker, "value": n} if gated else {"marker": marker, "seconds": 0.5}
            response = client.request(
                "POST",
                f"/api/v1/workflows/{workflow}/execute",
                "POST /workflows/{id}/execute",
                headers=self.world.owner,
                json={"input_data": data},
            )
            if response is not None and response.is_success:
                self.window.runs[marker] = response.json()["execution_id"]
                if gated:
                    waiting.add(self.window.runs[marker])
                    self.window.gated.add(self.window.runs[marker])
            elif response is not None and response.status_code == 503:
                self.window.runs_refused.add(marker)
            for execution_id in list(waiting):
                if approve_if_waiting(client, self.world, self.window, execution_id):
                    waiting.discard(execution_id)
            self._stop.wait(RUN_PAUSE_S)


def approve_if_waiting(client: Client, world: World, window: Window, execution_id: str) -> bool:
    """Approve the run's approval as the other admin if the run waits on one; True once approved."""
    response = client.request("GET", f"/api/v1/executions/{execution_id}", "GET /executions/{id}", headers=world.owner)
    if response is None or not response.is_success:
        return False
    run = response.json()
    waiting_on = run.get("waiting_on") or {}
    if run["status"] != "waiting" or not waiting_on.get("id"):
        return run["status"] in ("completed", "failed", "cancelled", "timeout")
    approval_id = waiting_on["id"]
    decided = client.request(
        "POST", f"/api/v1/approvals/{approval_id}/approve", "POST /approvals/{id}/approve", headers=world.approver
    )
    if decided is not None and decided.is_success:
        window.approved[approval_id] = execution_id
        return True
    return False


class WebhookReceiver:
    """The test's webhook endpoint: checks each signature and records every delivery's event id."""

    def __init__(self, port: int, secret: str) -> None:
        self.secret = secret
        self.received: Counter[str] = Counter()
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                with receiver.lock:
                    if hmac.compare_digest(expected, self.headers.get("X-Orchestrator-Signature", "")):
                        receiver.received[json.loads(body)["id"]] += 1
                    else:
                        receiver.bad_signatures += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="chaos-webhooks")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> set[str]:
        with self.lock:
            return set(self.received)


class Subscriber:
    """A WebSocket client on the `events` channel (the load's events only) that reconnects whenever its
    connection drops, as a real client does; records what it received and every refused handshake."""

    def __init__(self, world: World, name: str) -> None:
        self.url = world.base_url.replace("http://", "ws://") + "/api/v1/ws"
        self.headers = world.owner
        self.name = name
        self.received: set[str] = set()  # markers
        self.connects = 0
        self.drops: list[str] = []
        self.refused: list[Answer] = []  # handshakes answered with an HTTP status instead of 101
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"chaos-ws-{name}")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)

    def markers(self) -> set[str]:
        with self.lock:
            return set(self.received)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self.url, additional_headers=self.headers, open_timeout=10, max_size=None) as ws:
                    self._session(ws)
            except InvalidStatus as exc:
                response = exc.response
                self.refused.append(
                    Answer(
                        time.monotonic(),
                        "GET",
                        "WS /ws (upgrade)",
                        response.status_code,
                        response.headers.get("Retry-After"),
                        bytes(response.body or b"")[:300].decode(errors="replace"),
                    )
                )
            except Exception as exc:  # the replica died, the connection dropped: reconnect
                self.drops.append(f"{type(exc).__name__}: {exc}"[:200])
            self._stop.wait(0.5)

    def _session(self, ws: Any) -> None:
        ws.send(json.dumps({"type": "subscribe", "channel": "events", "filters": {"events": ["chaos.*"]}}))
        with self.lock:
            self.connects += 1
        while not self._stop.is_set():
            try:
                message = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            data = message.get("data") or {}
            if isinstance(data, dict) and "marker" in data:
                with self.lock:
                    self.received.add(data["marker"])


class StreamReader:
    """Reads the platform's Redis stream incrementally and keeps every event id it saw there."""

    def __init__(self, url: str, key: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.key = key
        self.last = "-"
        self.seen: Counter[str] = Counter()

    def refresh(self) -> set[str]:
        try:
            while True:
                start = "-" if self.last == "-" else f"({self.last}"
                entries = self.client.xrange(self.key, start, "+", count=5000)
                if not entries:
                    break
                for entry_id, fields in entries:
                    self.seen[json.loads(fields[b"event"])["id"]] += 1
                    self.last = entry_id.decode()
        except redis.RedisError:
            pass  # Redis away (the outage under test): what was read stays
        return set(self.seen)
