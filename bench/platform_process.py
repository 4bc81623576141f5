"""Start and stop the platform for a benchmark: `orchestrator up` in a subprocess on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout_s: float = 180, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"`orchestrator up` exited ({process.returncode}) before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(url)


def platform_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """An environment for a throwaway platform: its own data dir and ports, limits out of the way."""
    return {
        **os.environ,
        "ORCHESTRATOR_DATA_DIR": str(data_dir),
        "ORCHESTRATOR_PORT": str(port),
        "ORCHESTRATOR_DATABASE_URL": "",
        "ORCHESTRATOR_REDIS_URL": "",
        "ORCHESTRATOR_DASHBOARD_PORT": str(free_port()),
        # Counted as usual, but never reached: a benchmark measures the work, not the 429s.
        "ORCHESTRATOR_RATE_LIMIT_GENERAL": "100000000/h",
        "ORCHESTRATOR_RATE_LIMIT_HEALTH": "100000000/h",
        "ORCHESTRATOR_RATE_LIMIT_AUTH": "100000/h",
        "ORCHESTRATOR_RATE_LIMIT_REGISTER": "100000/h",
        "RAY_ADDRESS": "",
        # HAProxy's stats and metrics listeners default to fixed ports (8404, 9101): a second platform on the
        # machine (another benchmark, a test run) would fail to start its haproxy.
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        **extra,
    }


@contextmanager
def running_platform(data_dir: Path, **env_extra: str) -> Iterator[tuple[str, float]]:
    """Yields (base URL, seconds until /health answered 200); stops the platform afterwards."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = platform_env(data_dir, port, **env_extra)
    started = time.monotonic()
    with open(data_dir / "up.log", "w") as log:
        process = subprocess.Popen([BIN / "orchestrator", "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(f"{base}/health", process=process)
            yield base, time.monotonic() - started
        finally:
            subprocess.run([BIN / "orchestrator", "down"], env=env, check=False, capture_output=True)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:  # interrupted before `up` wrote its state file: `down` found nothing
                process.terminate()
                process.wait(60)
