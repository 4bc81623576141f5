"""End-to-end fixtures: the platform started the way a user starts it, once per test session.

`orchestrator up` runs as a subprocess (it starts this session's one Ray instance, applies migrations
and deploys the Serve app); tests talk to it over real HTTP; `orchestrator down` stops it at the end.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from persistence.db import Database
from tests.conftest import POSTGRES_ENV, REDIS_ENV, _postgres_schema, free_port

STARTUP_TIMEOUT_S = 180
E2E_REPLICAS = 2
E2E_CPUS = 4
E2E_IDLE_TIMEOUT_S = 12
E2E_HEARTBEAT_TIMEOUT_S = 3
# A small WebSocket buffer, so that the slow-consumer rule shows within a test.
E2E_WS_BUFFER = 20
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Platform:
    """The platform as `orchestrator up` runs it; `restart()` stops the whole Ray cluster and starts again."""

    base_url: str
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    startup_seconds: float = 0.0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_cli(), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> None:
        started = time.monotonic()
        with self.log_path.open("a") as log:
            log.write("\n--- orchestrator up ---\n")
            log.flush()
            offset = log.tell()
            self.process = subprocess.Popen([_cli(), "up"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        _wait_for_ready(self.process, self.log_path, offset)
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        down = self.cli("down", timeout=120)
        assert self.process is not None
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        assert down.returncode == 0, down.stdout + down.stderr
        assert self.process.returncode == 0, self.log_path.read_text()[-3000:]

    def restart(self) -> None:
        self.stop()
        self.start()


def _cli() -> str:
    return str(Path(sys.executable).parent / "orchestrator")


@pytest.fixture(scope="session")
def platform_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base_url = os.environ.get(POSTGRES_ENV)
    if base_url:
        yield from _postgres_schema(base_url)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('platform-db') / 'orchestrator.db'}"


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory, platform_database_url: str) -> Iterator[Platform]:
    data_dir = tmp_path_factory.mktemp("platform")
    port = free_port()
    env = {
        **os.environ,
        "ORCHESTRATOR_DATA_DIR": str(data_dir),
        "ORCHESTRATOR_PORT": str(port),
        "ORCHESTRATOR_DASHBOARD_PORT": str(free_port()),
        "ORCHESTRATOR_DATABASE_URL": platform_database_url,
        "ORCHESTRATOR_REDIS_URL": os.environ.get(REDIS_ENV, ""),
        "ORCHESTRATOR_REDIS_KEY_PREFIX": f"e2e-{secrets.token_hex(4)}:",
        "ORCHESTRATOR_ENVIRONMENT": "test",
        # Two replicas: the rate-limit and routing tests must hold across replicas, as in production.
        "ORCHESTRATOR_API_REPLICAS": str(E2E_REPLICAS),
        "ORCHESTRATOR_SHUTDOWN_DRAIN_TIMEOUT_S": "2",
        # A known node size (Ray accepts more logical CPUs than cores): the replicas hold 1 of the 4, so an
        # agent asking for 4 fits the node but must wait, and one asking for 5 never fits.
        "ORCHESTRATOR_RAY_NUM_CPUS": str(E2E_CPUS),
        # Short agent timers, so that passivation and offline workers are observable within a test.
        "ORCHESTRATOR_AGENT_IDLE_TIMEOUT_S": str(E2E_IDLE_TIMEOUT_S),
        "ORCHESTRATOR_AGENT_HEARTBEAT_TIMEOUT_S": str(E2E_HEARTBEAT_TIMEOUT_S),
        "ORCHESTRATOR_RECONCILE_INTERVAL_S": "2",
        # Every test registers its own accounts from this one IP; the register limit itself is tested in
        # the integration suite.
        "ORCHESTRATOR_RATE_LIMIT_REGISTER": "1000/h",
        # Agents may name code in the test fixtures only (handlers, LangGraph graphs).
        "ORCHESTRATOR_AGENT_CODE_MODULES": "tests.fixtures",
        # Runs: the tests start many, and resume after kills and restarts without waiting long.
        "ORCHESTRATOR_RATE_LIMIT_EXECUTIONS": "10000/h",
        "ORCHESTRATOR_RUN_LEASE_S": "4",
        "ORCHESTRATOR_RUN_POOL_SIZE": "2",
        "ORCHESTRATOR_WS_BUFFER_MESSAGES": str(E2E_WS_BUFFER),
        # Webhook receivers in the tests listen on 127.0.0.1; retries come quickly.
        "ORCHESTRATOR_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        # The requirement pipelines' LLM is a server the tests start on 127.0.0.1.
        "ORCHESTRATOR_HTTP_ALLOWED_HOSTS": "127.0.0.1",
        "ORCHESTRATOR_WEBHOOK_BACKOFF_BASE_S": "0.5",
        "ORCHESTRATOR_WEBHOOK_BACKOFF_MAX_S": "2",
        "ORCHESTRATOR_WEBHOOK_MAX_ATTEMPTS": "30",
        # Ray workers import the test fixtures (LangGraph graphs, native handlers) from the repository.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
        "RAY_ADDRESS": "",
        # Every traced process (API replicas, router, run actors) appends its spans to one file, which
        # tests/e2e/test_observability.py reads to follow a request across processes.
        "ORCHESTRATOR_OTEL_EXPORTER": "jsonl",
        "ORCHESTRATOR_OTEL_JSONL_PATH": str(data_dir / "traces.jsonl"),
    }
    platform = Platform(f"http://127.0.0.1:{port}", data_dir, data_dir / "up.log", env)
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


def _wait_for_ready(process: subprocess.Popen[bytes], log_path: Path, offset: int = 0) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if "ready in" in log_path.read_text()[offset:]:
            return
        if process.poll() is not None:
            pytest.fail(f"`orchestrator up` exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"`orchestrator up` not ready after {STARTUP_TIMEOUT_S}s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture
def http(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def owner(http: httpx.Client) -> dict[str, str]:
    email = f"agents-{secrets.token_hex(4)}@example.com"
    assert http.post("/api/v1/auth/register", json={"email": email, "password": "correct horse 1"}).status_code == 201
    login = http.post("/api/v1/auth/login", json={"email": email, "password": "correct horse 1"})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.fixture
def platform_db(platform_database_url: str) -> Iterator[Database]:
    database = Database(platform_database_url, pool_size=1, max_overflow=0)
    yield database
    database.dispose()


def make_admin(platform: Platform, name: str = "approver") -> dict[str, str]:
    """A platform admin made with `orchestrator admin create`; its bearer header."""
    email = f"{name}-{secrets.token_hex(4)}@example.com"
    password = "approver password 1"
    result = subprocess.run(
        [_cli(), "admin", "create", "--email", email, "--role", "admin"],
        env={**platform.env, "ORCHESTRATOR_ADMIN_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.fixture(scope="session")
def approver(platform: Platform) -> dict[str, str]:
    """A platform admin made with `orchestrator admin create`: it may decide any tenant's approvals."""
    return make_admin(platform)
