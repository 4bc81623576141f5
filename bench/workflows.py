"""Workflow runs through the platform as `orchestrator up` runs it, in one run:

1. per-step overhead of a durable step: a 100-step trivial `python` workflow, (run time) / 100, against
   100 sequential calls of a trivial method on a raw Ray actor measured in the same invocation (target:
   <= 3 ms per durable step over raw Ray, on Postgres);
2. 1-step workflows through the warm run pool: start latency (created -> started, server stamps) p50/p99
   of runs started one at a time with a warm actor free, and runs/s from the first request to the last
   completion with --concurrency clients posting --runs runs, with the start latency under that load;
3. what that load costs: the platform's Postgres connections (peak, sampled every 0.2 s), and the resident
   memory of each warm run actor once idle again.

`--baseline dbos` runs the same workloads through DBOS (bench/dbos_baseline.py, in a process of its own,
before the platform starts, on the same database) and prints each figure's ratio to it (target: >= 0.5x
DBOS's 1-step workflows/s; start latency under load p50 <= 100 ms).

Run from the repository root: `.venv/bin/python bench/workflows.py [--database-url URL] [--baseline dbos]`.
A Postgres URL is used in a scratch schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).parent))

from platform_process import running_platform
from tasks import PASSWORD, _percentile, _stamp, scratch_database

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = "tests.fixtures.workflow_nodes:add_one"


def raw_ray_calls(calls: int) -> float:
    """Seconds for `calls` sequential calls of a trivial actor method (Ray's own floor)."""
    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:

        @ray.remote
        class Counter:
            def add_one(self, value: int) -> int:
                return value + 1

        counter = Counter.remote()
        ray.get(counter.add_one.remote(0))  # started
        best = float("inf")
        for _ in range(5):
            value, started = 0, time.perf_counter()
            for _ in range(calls):
                value = ray.get(counter.add_one.remote(value))
            best = min(best, time.perf_counter() - started)
        return best
    finally:
        ray.shutdown()


def _workflow(http: httpx.Client, headers: dict, steps: int) -> str:
    agent = http.post("/api/v1/agents", headers=headers, json={"name": f"bench-{steps}"}).json()
    nodes = [{"id": "in", "type": "input"}]
    nodes += [{"id": f"s{i}", "type": "python", "config": {"function": FUNCTION}} for i in range(steps)]
    nodes.append({"id": "out", "type": "output"})
    edges = [{"source": a["id"], "target": b["id"]} for a, b in pairwise(nodes)]
    body = {"name": f"{steps} steps", "workflow_data": {"nodes": nodes, "edges": edges}}
    response = http.post(f"/api/v1/agents/{agent['id']}/workflows", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _wait(http: httpx.Client, headers: dict, execution_id: str, timeout_s: float = 300, poll_s: float = 0.05) -> dict:
    """The run once it ended. The poll competes with the run for the 2 cores: long runs are polled slowly."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = http.get(f"/api/v1/executions/{execution_id}", headers=headers).json()
        if run["status"] in ("completed", "failed", "cancelled", "timeout"):
            return run
        time.sleep(poll_s)
    raise TimeoutError(execution_id)


def dbos_figures(args: argparse.Namespace) -> dict[str, float]:
    """bench/dbos_baseline.py in a process of its own, on the same database (the same engine for SQLite)."""
    command = [sys.executable, str(Path(__file__).parent / "dbos_baseline.py"), "--runs", str(args.runs)]
    command += ["--concurrency", str(args.concurrency), "--steps", "100"]
    if args.database_url:
        command += ["--database-url", args.database_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the DBOS baseline failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class ConnectionSampler:
    """The platform's Postgres connections (`application_name` orchestrator:*), sampled while it runs."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_engine(database_url) if database_url.startswith("postgresql") else None
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ConnectionSampler:
        if self._engine is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._engine is not None:
            self._thread.join()
            self._engine.dispose()

    def _sample(self) -> None:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'orchestrator%'")
        while not self._stop.is_set():
            with self._engine.connect() as connection:
                self.peak = max(self.peak, connection.execute(query).scalar_one())
            self._stop.wait(0.2)


def run_actor_memory(data_dir: Path) -> list[float]:
    """Resident MB of each warm run actor of the platform whose data directory is `data_dir`."""
    sizes = []
    for process in psutil.process_iter(["cmdline"]):
        if "ray::WorkflowRunActor" not in " ".join(process.info["cmdline"] or []):
            continue
        try:
            if process.environ().get("ORCHESTRATOR_DATA_DIR") == str(data_dir):
                sizes.append(process.memory_info().rss / 2**20)
        except psutil.Error:
            continue
    return sizes


def run(args: argparse.Namespace) -> None:
    raw_s = raw_ray_calls(100)
    peer = dbos_figures(args) if args.baseline == "dbos" else None
    with scratch_database(args.database_url) as database_url, tempfile.TemporaryDirectory() as tmp:
        extra = {
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_AGENT_CODE_MODULES": "tests.fixtures",
            "ORCHESTRATOR_RATE_LIMIT_EXECUTIONS": "100000000/h",
            "PYTHONPATH": str(ROOT),
            "ORCHESTRATOR_RUN_POOL_SIZE": str(args.pool_size),
        }
        with (
            running_platform(Path(tmp) / "platform", **extra) as (base, _),
            httpx.Client(base_url=base, timeout=120) as http,
        ):
            http.post("/api/v1/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
            token = http.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD})
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

            # 1. A 100-step run, three times (the best is the machine's least disturbed).
            long_flow = _workflow(http, headers, 100)
            per_step = []
            for _ in range(3):
                started = http.post(
                    f"/api/v1/workflows/{long_flow}/execute", headers=headers, json={"input_data": {"value": 0}}
                )
                assert started.status_code == 201, f"{started.status_code} {started.text}"
                done = _wait(http, headers, started.json()["execution_id"], poll_s=1.0)
                assert done["status"] == "completed" and done["output"]["value"] == 100, done["error"]
                span = (_stamp(done["completed_at"]) - _stamp(done["started_at"])).total_seconds()
                per_step.append(span / 102 * 1000)  # input + 100 python + output

            # 2. 1-step runs through the warm pool.
            short_flow = _workflow(http, headers, 1)
            for _ in range(10):  # warm-up
                _wait(
                    http,
                    headers,
                    http.post(
                        f"/api/v1/workflows/{short_flow}/execute", headers=headers, json={"input_data": {"value": 0}}
                    ).json()["execution_id"],
                )

            # Start latency with a warm actor free: one run at a time.
            latency_runs = [
                _wait(
                    http,
                    headers,
                    http.post(
                        f"/api/v1/workflows/{short_flow}/execute", headers=headers, json={"input_data": {"value": 0}}
                    ).json()["execution_id"],
                )
                for _ in range(args.latency_runs)
            ]
            starts = [(_stamp(r["started_at"]) - _stamp(r["created_at"])).total_seconds() * 1000 for r in latency_runs]

            def start(_: int) -> str:
                response = http.post(
                    f"/api/v1/workflows/{short_flow}/execute", headers=headers, json={"input_data": {"value": 0}}
                )
                assert response.status_code == 201, f"{response.status_code} {response.text}"
                return response.json()["execution_id"]

            began = time.monotonic()
            with ConnectionSampler(database_url) as connections:
                with ThreadPoolExecutor(args.concurrency) as pool:
                    ids = list(pool.map(start, range(args.runs)))
                runs = [_wait(http, headers, execution_id) for execution_id in ids]
            # Throughput from the first request to the last completion (server stamps for the end).
            last_end = max(_stamp(r["completed_at"]) for r in runs)
            first_created = min(_stamp(r["created_at"]) for r in runs)
            span_s = (last_end - first_created).total_seconds()
            wall_s = time.monotonic() - began
            queued = [(_stamp(r["started_at"]) - _stamp(r["created_at"])).total_seconds() * 1000 for r in runs]
            failed = sum(1 for r in runs if r["status"] != "completed")
            ends = [(_stamp(r["completed_at"]) - _stamp(r["created_at"])).total_seconds() * 1000 for r in runs]
            actor_mb = run_actor_memory(Path(tmp) / "platform")

    raw_ms = raw_s / 100 * 1000
    best = min(per_step)
    throughput = args.runs / span_s

    def versus(mine: float, theirs: float | None, *, lower_is_better: bool = False) -> str:
        if theirs is None:
            return ""
        ratio = theirs / mine if lower_is_better else mine / theirs
        return f"   DBOS {theirs:8.2f}   ratio {ratio:5.2f}x"

    print(f"raw Ray actor call, sequential        {raw_ms:7.3f} ms per call (best of 5 x 100)")
    print(
        f"durable step (100-step python run)    {best:7.3f} ms per step (best of 3; all: "
        f"{', '.join(f'{v:.2f}' for v in per_step)})   overhead over raw Ray {best - raw_ms:6.3f} ms"
        + versus(best, peer and peer["per_step_ms"], lower_is_better=True)
    )
    print(
        f"1-step runs, {args.concurrency} clients, {args.runs} runs   {throughput:7.1f} runs/s "
        f"({span_s:.2f} s server time, {wall_s:.2f} s wall)   failed {failed}"
        + versus(throughput, peer and peer["open_runs_per_s"])
    )
    if peer:
        print(
            f"  DBOS with each client waiting for its run: {peer['closed_runs_per_s']:7.1f} runs/s, "
            f"end-to-end p50 {peer['closed_p50_ms']:.1f} ms p99 {peer['closed_p99_ms']:.1f} ms"
        )
    print(
        f"run start latency, a warm actor free (created -> started, {len(starts)} runs one at a time)   "
        f"p50 {statistics.median(starts):7.1f} ms   p99 {_percentile(starts, 0.99):7.1f} ms"
    )
    print(
        f"  under the load above: start p50 {statistics.median(queued):7.1f} ms (target <= 100 ms), "
        f"created -> completed p50 {statistics.median(ends):7.1f} ms p99 {_percentile(ends, 0.99):7.1f} ms"
    )
    if args.database_url.startswith("postgresql"):
        print(f"Postgres connections of the platform under that load: peak {connections.peak}")
    print(
        f"warm run actors after the load: {len(actor_mb)}, resident "
        + ", ".join(f"{mb:.0f}" for mb in sorted(actor_mb))
        + " MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="default: the platform's embedded SQLite")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pool-size", type=int, default=2, help="the warm pool's floor")
    parser.add_argument("--baseline", choices=["none", "dbos"], default="none")
    parser.add_argument("--latency-runs", type=int, default=50)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
