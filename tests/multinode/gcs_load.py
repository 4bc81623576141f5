"""A steady HTTP load on the platform while the head's gcs_server is killed and restarted, for
tests/multinode/test_gcs_fault_tolerance.py and bench/gcs_kill.py.

Each client thread loops: create a task for a deployed agent, read it back, list the agent's tasks; one of them
also starts a workflow run every few rounds. One more thread asks, twice a second, what needs Ray's control store
(the agent's container, as Ray sees it: `GET /agents/{id}/container`), and tries to deploy a spare agent (a new
actor). Every call is recorded (when it began, how long it took, its status
and `Retry-After`), so that the outage's error rate and latency are measured on what the clients saw, and every
task or run a 2xx answer created can be looked up afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.multinode import harness
from tests.multinode.harness import ok

REQUEST_TIMEOUT_S = 30.0
RUN_EVERY = 8  # rounds of the first client between two runs
# The load is thousands of calls a minute from one account, far above the general rate limit (not measured here).
PLATFORM_ENV = {"ORCHESTRATOR_RATE_LIMIT_GENERAL": "1000000/h"}


@dataclass(frozen=True)
class Call:
    kind: str  # create, read, list, run
    began: float  # time.time()
    seconds: float
    status: int  # 0: no HTTP answer (connection error or client timeout)
    retry_after: str | None
    created: str | None  # the task's or run's id, when a create answered 2xx


@dataclass
class Load:
    """Client threads against `base_url`, recording every call, until `stop()`."""

    base_url: str
    owner: dict[str, str]
    agent_id: str
    workflow_id: str
    effects: Path
    spare_agent_id: str | None = None  # deployed by the control-plane thread once `deploy_spare()` is called
    clients: int = 3
    calls: list[Call] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _deploy: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for number in range(self.clients):
            thread = threading.Thread(target=self._client, args=(number,), name=f"load-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        thread = threading.Thread(target=self._control_plane, name="load-control", daemon=True)
        thread.start()
        self._threads.append(thread)

    def deploy_spare(self) -> None:
        """From now on, the control-plane thread tries to deploy the spare agent until it is deployed."""
        self._deploy.set()

    def stop(self) -> list[Call]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)
        with self._lock:
            return list(self.calls)

    def _call(self, http: httpx.Client, kind: str, method: str, path: str, body: Any = None) -> httpx.Response | None:
        began, started = time.time(), time.monotonic()
        response: httpx.Response | None = None
        with contextlib.suppress(httpx.HTTPError):
            response = http.request(method, path, headers=self.owner, json=body)
        created = None
        if response is not None and response.is_success and kind in ("create", "run"):
            answer = response.json()
            created = answer["id"] if kind == "create" else answer["execution_id"]
        call = Call(
            kind,
            began,
            time.monotonic() - started,
            response.status_code if response is not None else 0,
            response.headers.get("Retry-After") if response is not None else None,
            created,
        )
        with self._lock:
            self.calls.append(call)
        return response

    def _client(self, number: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as http:
            rounds = 0
            while not self._stop.is_set():
                rounds += 1
                body = {"agentId": self.agent_id, "payload": {"seconds": 0}}
                created = self._call(http, "create", "POST", "/api/v1/tasks", body)
                if created is not None and created.is_success:
                    self._call(http, "read", "GET", f"/api/v1/tasks/{created.json()['id']}")
                self._call(http, "list", "GET", f"/api/v1/tasks?agent_id={self.agent_id}&limit=20")
                if number == 0 and rounds % RUN_EVERY == 1:
                    folder = self.effects / secrets.token_hex(4)
                    run_body = {"input_data": {"effects_dir": str(folder), "effect_sleep": 0}}
                    self._call(http, "run", "POST", f"/api/v1/workflows/{self.workflow_id}/execute", run_body)

    def _control_plane(self) -> None:
        deployed = self.spare_agent_id is None
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as http:
            while not self._stop.wait(0.5):
                self._call(http, "container", "GET", f"/api/v1/agents/{self.agent_id}/container")
                if not deployed and self._deploy.is_set():
                    answer = self._call(http, "deploy", "POST", f"/api/v1/agents/{self.spare_agent_id}/deploy")
                    deployed = answer is not None and answer.is_success


def stored_tasks(http: httpx.Client, owner: dict[str, str], agent_id: str) -> dict[str, str]:
    """Every task of the agent, id -> status, read page by page (one request per 100 tasks)."""
    found: dict[str, str] = {}
    page = 1
    while True:
        answer = ok(http.get(f"/api/v1/tasks?agent_id={agent_id}&limit=100&page={page}", headers=owner))
        found.update({task["id"]: task["status"] for task in answer["tasks"]})
        if len(answer["tasks"]) < 100:
            return found
        page += 1


def deployed_agent(http: httpx.Client, owner: dict[str, str], *, deploy: bool = True) -> str:
    """A hosted agent whose handler sleeps the task's `seconds` (0 here), deployed on a work node unless told."""
    agent = ok(
        http.post(
            "/api/v1/agents",
            headers=owner,
            json={
                "name": f"gcs-{secrets.token_hex(3)}",
                "max_concurrent_tasks": 50,  # backpressure (409) is not what is measured
                "resource_limits": {"cpu": harness.AGENT_CPU},
                "configuration": {"handler": "tests.fixtures.handlers:sleep"},
            },
        )
    )
    if deploy:
        ok(http.post(f"/api/v1/agents/{agent['id']}/deploy", headers=owner))
    return agent["id"]


@dataclass(frozen=True)
class Outage:
    """What the clients saw between the kill and the new GCS answering."""

    calls: int
    errors: int  # not 2xx
    unavailable: int  # 503
    unavailable_without_retry_after: int
    other_errors: list[tuple[str, int]]  # (kind, status) of every error that is not a 503
    p50_s: float
    p99_s: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


# Filled by the GCS fault-tolerance test, printed by tests/multinode/conftest.py.
OUTAGES: list[Outage] = []


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else 0.0


def outage(calls: list[Call], begin: float, end: float) -> Outage:
    """The calls that began in [begin, end) (wall time)."""
    window = [call for call in calls if begin <= call.began < end]
    errors = [call for call in window if not 200 <= call.status < 300]
    unavailable = [call for call in errors if call.status == 503]
    return Outage(
        calls=len(window),
        errors=len(errors),
        unavailable=len(unavailable),
        unavailable_without_retry_after=sum(1 for call in unavailable if not call.retry_after),
        other_errors=[(call.kind, call.status) for call in errors if call.status != 503],
        p50_s=percentile([call.seconds for call in window], 0.5),
        p99_s=percentile([call.seconds for call in window], 0.99),
    )


def redis_address() -> tuple[str, int] | None:
    """The Redis Ray's GCS may use: ORCHESTRATOR_TEST_REDIS_URL's host and port (the GCS ignores its database
    number: Ray keeps its keys in database 0, under the cluster's storage namespace), if it answers."""
    import redis

    url = os.environ.get("ORCHESTRATOR_TEST_REDIS_URL")
    if not url:
        return None
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        return None
    finally:
        client.close()
    kwargs = client.connection_pool.connection_kwargs
    return kwargs.get("host", "127.0.0.1"), int(kwargs.get("port", 6379))
