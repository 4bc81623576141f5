"""The platform started the way a user starts it, once per test session, for every suite that needs it.

`orchestrator up` runs as a subprocess (it starts this session's one Ray instance, applies migrations
and deploys the Serve app); tests talk to it over real HTTP; `orchestrator down` stops it at the end.
Registered from the root ``tests/conftest.py`` (``pytest_plugins``), so that ``tests/e2e`` and
``tests/chaos`` share one platform, and so one Ray instance, per session.

Isolation from anything else on the machine: with ``ORCHESTRATOR_TEST_DATABASE_URL`` the platform gets a
Postgres database of its own (created for the session, dropped at the end), so that a test may cut every
connection to it without touching another session's; with ``ORCHESTRATOR_TEST_REDIS_URL`` and a
``redis-server`` binary on PATH it gets a Redis server of its own on a free port, which a test may stop
and start again (without the binary it uses the configured Redis, and such tests are skipped).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from persistence.db import Database
from persistence.migrate import upgrade
from tests.conftest import POSTGRES_ENV, REDIS_ENV, free_port

STARTUP_TIMEOUT_S = 180
E2E_REPLICAS = 2
E2E_CPUS = 4
E2E_IDLE_TIMEOUT_S = 12
E2E_HEARTBEAT_TIMEOUT_S = 3
# A small WebSocket buffer, so that the slow-consumer rule shows within a test.
E2E_WS_BUFFER = 20
E2E_WEBHOOK_TIMEOUT_S = 2
REPO_ROOT = Path(__file__).resolve().parents[1]


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

    def state(self) -> dict[str, Any]:
        """What `orchestrator up` wrote about the running platform (its Ray address among it)."""
        return json.loads((self.data_dir / "run" / "orchestrator.json").read_text())

    def processes(self, title: str) -> list[psutil.Process]:
        """This platform's processes whose command line holds `title` (Ray's process titles: `ray::TaskRouter`,
        `ray::WorkflowRunActor.execute` while it runs that method). Told apart from another platform's on the
        same machine (a developer's `orchestrator up`, a benchmark) by the data directory in their environment,
        which Ray's workers inherit from `orchestrator up`."""
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if title not in " ".join(process.info["cmdline"] or []):
                continue
            with contextlib.suppress(psutil.Error):
                if process.environ().get("ORCHESTRATOR_DATA_DIR") == str(self.data_dir):
                    found.append(process)
        return found


def _cli() -> str:
    return str(Path(sys.executable).parent / "orchestrator")


class RedisServer:
    """A `redis-server` of the platform's own on a free port: stopping it touches no one else's Redis.
    `stop()` saves its data first (SHUTDOWN SAVE) and `start()` loads it again, as a restarted server does."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        args += ["--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb", "--logfile", "redis.log"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "redis.log").read_text()[-2000:]
                    raise RuntimeError(f"redis-server did not start: {log}") from exc
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(redis.RedisError):  # the server closes the connection as it exits
            redis.Redis.from_url(self.url, socket_timeout=10).shutdown(save=True)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def platform_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer | None]:
    """The platform's own Redis server when Redis tests are configured and `redis-server` is installed."""
    binary = shutil.which("redis-server")
    if not os.environ.get(REDIS_ENV) or binary is None:
        yield None
        return
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _postgres_database(base_url: str) -> Iterator[str]:
    """A database of its own for the session's platform, dropped at the end: a test may then cut every
    connection to it (`pg_terminate_backend` on `current_database()`) and touch no other session's."""
    name = f"orchestrator_e2e_{secrets.token_hex(6)}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def platform_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base_url = os.environ.get(POSTGRES_ENV)
    if base_url:
        yield from _postgres_database(base_url)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('platform-db') / 'orchestrator.db'}"


@pytest.fixture(scope="session")
def platform_redis_url(platform_redis: RedisServer | None) -> str:
    """The Redis the platform uses: its own server, else the configured one, else none ("")."""
    return platform_redis.url if platform_redis else os.environ.get(REDIS_ENV, "")


@pytest.fixture(scope="session")
def platform(
    tmp_path_factory: pytest.TempPathFactory, platform_database_url: str, platform_redis_url: str
) -> Iterator[Platform]:
    data_dir = tmp_path_factory.mktemp("platform")
    port = free_port()
    env = {
        **os.environ,
        "ORCHESTRATOR_DATA_DIR": str(data_dir),
        "ORCHESTRATOR_PORT": str(port),
        "ORCHESTRATOR_DASHBOARD_PORT": str(free_port()),
        "ORCHESTRATOR_DATABASE_URL": platform_database_url,
        "ORCHESTRATOR_REDIS_URL": platform_redis_url,
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
        # The pool's extra warm actors stop soon after a burst, so a test sees it grow and shrink.
        "ORCHESTRATOR_RUN_POOL_IDLE_S": "3",
        "ORCHESTRATOR_WS_BUFFER_MESSAGES": str(E2E_WS_BUFFER),
        # Webhook receivers in the tests listen on 127.0.0.1; retries come quickly.
        "ORCHESTRATOR_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        # The requirement pipelines' LLM is a server the tests start on 127.0.0.1.
        "ORCHESTRATOR_HTTP_ALLOWED_HOSTS": "127.0.0.1",
        "ORCHESTRATOR_WEBHOOK_BACKOFF_BASE_S": "0.5",
        "ORCHESTRATOR_WEBHOOK_BACKOFF_MAX_S": "2",
        "ORCHESTRATOR_WEBHOOK_MAX_ATTEMPTS": "30",
        # Local receivers answer at once; a short timeout also shortens the claim lease of the deliveries a
        # killed event hub had in flight (tests/chaos waits for it).
        "ORCHESTRATOR_WEBHOOK_TIMEOUT_S": str(E2E_WEBHOOK_TIMEOUT_S),
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
    return register_user(http)


def register_user(http: httpx.Client, name: str = "agents") -> dict[str, str]:
    """A new user registered through the API; its bearer header."""
    email = f"{name}-{secrets.token_hex(4)}@example.com"
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
