"""Chaos fixtures: the e2e session's platform (tests/platform_fixtures.py), a Ray driver in a process of its
own to kill its actors, and the load's world (an owner, a hosted agent, two workflows, a webhook receiver,
WebSocket subscribers, the Redis stream), set up once for the module."""

from __future__ import annotations

import itertools
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from tests.chaos.load import StreamReader, Subscriber, WebhookReceiver, World
from tests.conftest import free_port
from tests.platform_fixtures import REPO_ROOT, Platform

# Filled by the fault tests, printed at the end of the session (fault -> recovery -> requests).
RESULTS: list[dict[str, Any]] = []
DRIVER_TIMEOUT_S = 60


class RayDriver:
    """`tests/chaos/ray_driver.py` connected to the platform's Ray: one JSON command, one JSON answer."""

    def __init__(self, address: str, log_path: Path) -> None:
        # Ray 2.60 asks a client joining a running instance for its token (as tests/autoscaling's drivers do).
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token"}
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.ray_driver", address],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_path.open("w"),
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._answer().get("ready"), "the Ray driver did not connect"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self._lines.put(line)

    def _answer(self) -> dict[str, Any]:
        try:
            return json.loads(self._lines.get(timeout=DRIVER_TIMEOUT_S))
        except queue.Empty:
            log = self.log_path.read_text()[-3000:]
            raise AssertionError(f"the Ray driver did not answer within {DRIVER_TIMEOUT_S}s: {log}") from None

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()
        answer = self._answer()
        assert answer["ok"], f"Ray driver {op} {args}: {answer.get('error')}"
        return answer

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_driver(platform: Platform) -> Iterator[RayDriver]:
    driver = RayDriver(platform.state()["ray_address"], platform.data_dir / "chaos-ray-driver.log")
    yield driver
    driver.close()


@pytest.fixture(scope="module")
def platform_engine(platform_database_url: str) -> Iterator[Engine]:
    """The checker's reads: a connection per query (NullPool), so that a cut connection never lingers."""
    engine = create_engine(platform_database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def chaos_owner(platform: Platform, platform_engine: Engine) -> dict[str, str]:
    """The load's user, on the `pro` tier (10x the limits): the whole module sends it ~2,000 requests, more
    than the free tier's general limit of 1000/h (rate limits are not under test here; a 429 would fail)."""
    email, password = f"chaos-{secrets.token_hex(4)}@example.com", "correct horse 1"
    with httpx.Client(base_url=platform.base_url, timeout=60) as http:
        _ok(http.post("/api/v1/auth/register", json={"email": email, "password": password}))
        with platform_engine.begin() as conn:
            conn.execute(text("UPDATE users SET subscription_tier = 'pro' WHERE email = :email"), {"email": email})
        token = _ok(http.post("/api/v1/auth/login", json={"email": email, "password": password}))["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def world(
    platform: Platform, approver: dict[str, str], chaos_owner: dict[str, str], webhook_receiver: WebhookReceiver
) -> Iterator[World]:
    """Set up after the webhook, so that every event of the owner's is one the webhook must receive."""
    owner = chaos_owner
    with httpx.Client(base_url=platform.base_url, timeout=60) as http:
        me = _ok(http.get("/api/v1/users/me", headers=owner))
        agent = _ok(
            http.post(
                "/api/v1/agents",
                headers=owner,
                json={
                    "name": f"chaos-dev-{secrets.token_hex(3)}",
                    "type": "dev",
                    "max_concurrent_tasks": 20,
                    "configuration": {"handler": "tests.fixtures.handlers:whoami"},
                },
            )
        )
        _ok(http.post(f"/api/v1/agents/{agent['id']}/deploy", headers=owner))
        holder = _ok(http.post("/api/v1/agents", headers=owner, json={"name": f"chaos-flows-{secrets.token_hex(3)}"}))
        fix = "tests.fixtures.workflow_nodes"
        approval = _workflow(
            http,
            owner,
            holder["id"],
            {"id": "in", "type": "input"},
            {"id": "gate", "type": "approval", "config": {"reason": "chaos"}},
            {"id": "add", "type": "python", "config": {"function": f"{fix}:add_one"}},
            {"id": "out", "type": "output"},
        )
        sleeper = _workflow(
            http,
            owner,
            holder["id"],
            {"id": "in", "type": "input"},
            {"id": "nap", "type": "python", "config": {"function": f"{fix}:sleep"}},
            {"id": "out", "type": "output"},
        )
        yield World(platform.base_url, owner, me["id"], approver, agent["id"], approval, sleeper)
        http.post(f"/api/v1/agents/{agent['id']}/undeploy", headers=owner)


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.is_success, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


def _workflow(http: httpx.Client, headers: dict[str, str], agent_id: str, *nodes: dict) -> str:
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    body = {"name": "chaos", "workflow_data": {"nodes": list(nodes), "edges": edges}}
    return _ok(http.post(f"/api/v1/agents/{agent_id}/workflows", headers=headers, json=body))["id"]


@pytest.fixture(scope="module")
def webhook_receiver(platform: Platform, chaos_owner: dict[str, str]) -> Iterator[WebhookReceiver]:
    port = free_port()
    receiver = WebhookReceiver(port, f"chaos-{secrets.token_hex(8)}")
    receiver.start()
    with httpx.Client(base_url=platform.base_url, timeout=60) as http:
        hook = _ok(
            http.post(
                "/api/v1/webhooks",
                headers=chaos_owner,
                json={"url": f"http://127.0.0.1:{port}/hook", "events": ["*"], "secret": receiver.secret},
            )
        )
        yield receiver
        http.delete(f"/api/v1/webhooks/{hook['id']}", headers=chaos_owner)
    receiver.stop()


@pytest.fixture(scope="module")
def subscribers(world: World) -> Iterator[list[Subscriber]]:
    """Two WebSocket clients (with two API replicas, most likely one on each)."""
    clients = [Subscriber(world, f"ws{n}") for n in range(2)]
    for client in clients:
        client.start()
    yield clients
    for client in clients:
        client.stop()


@pytest.fixture(scope="module")
def stream(platform: Platform) -> StreamReader:
    return StreamReader(
        platform.env["ORCHESTRATOR_REDIS_URL"], f"{platform.env['ORCHESTRATOR_REDIS_KEY_PREFIX']}events"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("chaos: recovery per fault")
    for line in results_table(RESULTS):
        terminalreporter.write_line(line)


def results_table(results: list[dict[str, Any]]) -> list[str]:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        f"{'fault':<22} {'back s':>7} {'health s':>9} {'work s':>7} {'2xx':>5} {'503':>4} {'other':>5} "
        f"{'cut':>4}  result",
    ]
    for row in results:
        lines.append(
            f"{row['fault']:<22} {seconds(row['back_s']):>7} {seconds(row['health_s']):>9} "
            f"{seconds(row['work_s']):>7} {row['2xx']:>5} {row['503']:>4} {row['other']:>5} {row['cut']:>4}  "
            f"{row['result']}"
        )
    return lines


def write_results(path: Path) -> None:
    path.write_text("\n".join(results_table(RESULTS)) + "\n")
