"""A whole platform on a Ray instance of its own (`orchestrator up` with no address), for the cluster-swap
tests and bench/cluster_swap.py: two of them on one machine and one database are two clusters, as an
upgrade's old and new RayService clusters are.

Each has its own data directory, API and dashboard ports and Ray session; every process of it (the `up`
process, Ray's GCS, raylet and workers) inherits its `ORCHESTRATOR_DATA_DIR`, which is how `processes` tells
it from the other cluster and from any other platform on the machine. `kill` is a cluster lost (SIGKILL to
every process at once, nothing drained); `pause`/`resume` (SIGSTOP/SIGCONT) is a cluster that stops
answering for a while and then wakes, with its actors still believing they hold their work.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

import psutil

from tests.conftest import free_port
from tests.platform_fixtures import REPO_ROOT, Platform

RUN_LEASE_S = 4
# The clusters of one swap share the token and encryption keys, as an upgrade's two RayServices share the
# Kubernetes Secret (docs/deploy.md): a token signed by the old cluster is valid on the new one.
SHARED_SECRETS = {
    "ORCHESTRATOR_JWT_SECRET": secrets.token_hex(32),
    "ORCHESTRATOR_ENCRYPTION_KEY": secrets.token_hex(32),
}


def start(database_url: str, folder: Path, **extra: str) -> Platform:
    """`orchestrator up` on a new local Ray instance against `database_url`; returns once the API answers."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "ORCHESTRATOR_DATA_DIR": str(folder),
        "ORCHESTRATOR_PORT": str(port),
        "ORCHESTRATOR_DASHBOARD_PORT": str(free_port()),
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "ORCHESTRATOR_REDIS_URL": "",
        "ORCHESTRATOR_ENVIRONMENT": "test",
        "ORCHESTRATOR_RAY_ADDRESS": "",
        "RAY_ADDRESS": "",
        "ORCHESTRATOR_RAY_NUM_CPUS": "4",
        # Serve's default proxy: HAProxy's stats and metrics ports are fixed, and two clusters run here.
        "ORCHESTRATOR_FAST_PROXY": "off",
        "ORCHESTRATOR_API_REPLICAS": "1",
        "ORCHESTRATOR_RUN_POOL_SIZE": "1",
        "ORCHESTRATOR_RUN_LEASE_S": str(RUN_LEASE_S),
        "ORCHESTRATOR_RECONCILE_INTERVAL_S": "2",
        "ORCHESTRATOR_AGENT_CODE_MODULES": "tests.fixtures",
        "ORCHESTRATOR_ALLOW_SELF_APPROVAL": "true",
        "ORCHESTRATOR_RATE_LIMIT_REGISTER": "1000/h",
        "ORCHESTRATOR_RATE_LIMIT_EXECUTIONS": "10000/h",
        "ORCHESTRATOR_SHUTDOWN_DRAIN_TIMEOUT_S": "2",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
        **SHARED_SECRETS,
        **extra,
    }
    platform = Platform(f"http://127.0.0.1:{port}", folder, folder / "up.log", env)
    platform.start()
    return platform


def processes(platform: Platform) -> list[psutil.Process]:
    """Every process of the cluster: `orchestrator up`, Ray's own and the actors' workers."""
    return platform.processes("")


def pids(platform: Platform) -> set[int]:
    return {process.pid for process in processes(platform)}


def _signal(platform: Platform, signum: int) -> list[psutil.Process]:
    found = processes(platform)
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signum)
    return found


def kill(platform: Platform) -> None:
    """The cluster lost: every process killed at once; returns when none is left."""
    found = _signal(platform, signal.SIGKILL)
    psutil.wait_procs(found, timeout=30)
    if platform.process is not None:
        platform.process.wait(timeout=30)
    # Ray workers forked meanwhile (an actor starting) inherit the environment too: kill until none is left.
    deadline = time.monotonic() + 30
    while (left := _signal(platform, signal.SIGKILL)) and time.monotonic() < deadline:
        psutil.wait_procs(left, timeout=5)


def pause(platform: Platform) -> None:
    _signal(platform, signal.SIGSTOP)


def resume(platform: Platform) -> None:
    _signal(platform, signal.SIGCONT)
