"""The platform on a multi-node Ray cluster of this machine, for tests/multinode and bench/node_loss.py.

`ClusterProcess` runs `tests/multinode/cluster_process.py` (a `ray.cluster_utils.Cluster`: a head with
`num_cpus=0`, as on KubeRay, and worker nodes added and removed on command); `start_platform` runs
`orchestrator up --address` against it, as an operator joins a cluster. The pytest process is never a Ray
driver: the session's own Ray (tests/integration, the e2e platform) and this cluster never meet.

The shape, chosen so that placement is decided by resources and checkable:
- the head: no CPU; the platform's singletons pin themselves to it (actors/placement.py);
- `api`: a worker of exactly `API_CPUS` CPUs, which the one API replica fills; the warm run actors ask for
  more than it has, so they wait for a worker with room (Ray places them when one joins);
- the work nodes, added after the platform is up: `WORK_NODE_CPUS` each, room for the warm run actors, an
  agent and a heavy run; removed with SIGKILL to every process of the node (a machine lost, not drained).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port
from tests.platform_fixtures import REPO_ROOT, Platform

NAMESPACE = "orchestrator"  # ORCHESTRATOR_RAY_NAMESPACE's default
SYSTEM_ACTORS = ("store", "router", "event-hub", "reconciler", "runs")
API_CPUS = 1
RUN_POOL_SIZE = 2
RUN_POOL_CPU = 2  # more than the `api` node has: the warm run actors go to a work node
AGENT_CPU = 1
HEAVY_RUN_CPU = 3  # beyond the pool's shape: an actor of its own, `run:<id>`
WORK_NODE_CPUS = RUN_POOL_SIZE * RUN_POOL_CPU + AGENT_CPU + HEAVY_RUN_CPU
FIX = "tests.fixtures.workflow_nodes"
COMMAND_TIMEOUT_S = 120

# Filled by the node-loss test, printed by tests/multinode/conftest.py: run -> seconds from the node's loss to
# its interrupted step running again elsewhere.
RESUMED_AFTER: dict[str, float] = {}


class ClusterProcess:
    """`python -m tests.multinode.cluster_process`: one JSON command, one JSON answer."""

    def __init__(self, log_path: Path, gcs_env: dict[str, str] | None = None) -> None:
        """`gcs_env`: Ray's own variables for the head's GCS, e.g. `RAY_REDIS_ADDRESS` for fault tolerance."""
        # Ray's workers inherit the raylets' environment: they import the test fixtures from the repository.
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_ADDRESS": "", **(gcs_env or {})}
        head = {"num_cpus": 0, "include_dashboard": False}
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.multinode.cluster_process", json.dumps(head)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_path.open("w"),
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._answer()
        self.address: str = ready["address"]
        self.head: str = ready["head"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self._lines.put(line)

    def _answer(self) -> dict[str, Any]:
        try:
            answer = json.loads(self._lines.get(timeout=COMMAND_TIMEOUT_S))
        except queue.Empty:
            log = self.log_path.read_text()[-3000:]
            raise AssertionError(f"the cluster process did not answer within {COMMAND_TIMEOUT_S}s: {log}") from None
        assert answer["ok"], answer.get("error")
        return answer

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def add_node(self, num_cpus: int) -> str:
        return self.call("add_node", num_cpus=num_cpus)["node_id"]

    def remove_node(self, node_id: str) -> float:
        """Every process of the node killed at once (SIGKILL); the wall time just before."""
        return self.call("remove_node", node_id=node_id, graceful=False)["removed_at"]

    def kill_gcs(self) -> float:
        """The head's gcs_server killed (SIGKILL); the wall time just before."""
        return self.call("kill_gcs")["killed_at"]

    def start_gcs(self) -> float:
        """A new gcs_server on the head, on the same port; the wall time it was launched (not yet serving)."""
        return self.call("start_gcs")["started_at"]

    def actors(self) -> dict[str, dict[str, Any]]:
        """Actors by name (the platform's and Serve's), each where it is now; a dead one only if no live one
        has its name."""
        found: dict[str, dict[str, Any]] = {}
        for actor in self.call("actors")["actors"]:
            name = actor["name"] or actor["class_name"]
            if name not in found or found[name]["state"] == "DEAD":
                found[name] = actor
        return found

    def close(self) -> None:
        """The process removes every node when its stdin closes."""
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class Cluster:
    """The cluster process and which worker is which."""

    def __init__(self, process: ClusterProcess, api: str, work: str) -> None:
        self.process = process
        self.api = api
        self.work = work  # the work node now; a test that removes it sets the next one

    def node_of(self, name: str) -> str | None:
        actor = self.process.actors().get(name)
        return actor["node_id"] if actor and actor["state"] == "ALIVE" else None


def start_platform(
    cluster: ClusterProcess, database_url: str, folder: Path, extra_env: dict[str, str] | None = None
) -> Platform:
    """`orchestrator up --address` on the cluster, with the sizes above (and `extra_env`'s settings)."""
    port = free_port()
    env = {
        **os.environ,
        "ORCHESTRATOR_DATA_DIR": str(folder),
        "ORCHESTRATOR_PORT": str(port),
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "ORCHESTRATOR_REDIS_URL": "",
        "ORCHESTRATOR_ENVIRONMENT": "test",
        "ORCHESTRATOR_RAY_ADDRESS": cluster.address,
        "RAY_ADDRESS": cluster.address,
        # Serve's default proxy, on the head only: every node of this cluster has the same address, and
        # the HAProxy ingress of each replica would need its own port.
        "ORCHESTRATOR_FAST_PROXY": "off",
        "ORCHESTRATOR_API_REPLICAS": "1",
        "ORCHESTRATOR_API_CPUS_PER_REPLICA": str(API_CPUS),
        "ORCHESTRATOR_RUN_POOL_SIZE": str(RUN_POOL_SIZE),
        "ORCHESTRATOR_RUN_POOL_CPU": str(RUN_POOL_CPU),
        "ORCHESTRATOR_RUN_LEASE_S": "4",
        "ORCHESTRATOR_RECONCILE_INTERVAL_S": "2",
        "ORCHESTRATOR_AGENT_CODE_MODULES": "tests.fixtures",
        "ORCHESTRATOR_RATE_LIMIT_REGISTER": "1000/h",
        "ORCHESTRATOR_RATE_LIMIT_EXECUTIONS": "10000/h",
        "ORCHESTRATOR_SHUTDOWN_DRAIN_TIMEOUT_S": "2",
        "PYTHONPATH": str(REPO_ROOT),
        **(extra_env or {}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    platform = Platform(f"http://127.0.0.1:{port}", folder, folder / "up.log", env)
    platform.start()
    return platform


def eventually(probe: Callable[[], Any], *, timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    """The probe's first truthy answer, polled until a deadline: no wait in these tests is unbounded."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f}s (last: {answer!r})")
        time.sleep(every_s)


def register(http: httpx.Client) -> dict[str, str]:
    email = f"multinode-{secrets.token_hex(4)}@example.com"
    assert http.post("/api/v1/auth/register", json={"email": email, "password": "correct horse 1"}).status_code == 201
    token = http.post("/api/v1/auth/login", json={"email": email, "password": "correct horse 1"}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def ok(response: httpx.Response) -> Any:
    assert response.is_success, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


def effect_workflow(http: httpx.Client, headers: dict[str, str]) -> str:
    """`in → first → second → out`, both middle steps `effect_on_node` (an effect per idempotency key, and
    where and when each execution began)."""
    holder = ok(http.post("/api/v1/agents", headers=headers, json={"name": f"flows-{secrets.token_hex(3)}"}))
    nodes = [
        {"id": "in", "type": "input"},
        {"id": "first", "type": "python", "config": {"function": f"{FIX}:effect_on_node"}},
        {"id": "second", "type": "python", "config": {"function": f"{FIX}:effect_on_node"}},
        {"id": "out", "type": "output"},
    ]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    body = {"name": "effects", "workflow_data": {"nodes": nodes, "edges": edges}}
    return ok(http.post(f"/api/v1/agents/{holder['id']}/workflows", headers=headers, json=body))["id"]


def execute(
    http: httpx.Client, headers: dict[str, str], workflow_id: str, effects: Path, *, sleep_s: float, cpu: float = 0
) -> str:
    body: dict[str, Any] = {"input_data": {"effects_dir": str(effects), "effect_sleep": sleep_s}}
    if cpu:
        body["execution_options"] = {"resources": {"cpu": cpu}}
    return ok(http.post(f"/api/v1/workflows/{workflow_id}/execute", headers=headers, json=body))["execution_id"]


def run(http: httpx.Client, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    return ok(http.get(f"/api/v1/executions/{run_id}", headers=headers))


def placed(effects: Path) -> list[tuple[str, str, float]]:
    """Each execution of an `effect_on_node` step: (idempotency key, node id, wall time it began)."""
    path = effects / "placed"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        key, node_id, at = line.split()
        rows.append((key, node_id, float(at)))
    return rows


def applied(effects: Path) -> list[str]:
    """The effects that exist (one file per idempotency key applied)."""
    return sorted(p.name for p in effects.iterdir() if p.name not in ("calls", "placed"))
