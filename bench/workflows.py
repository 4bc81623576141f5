"""Workflow runs through the platform as `orchestrator up` runs it, in one run:

1. per-step overhead of a durable step: a 100-step trivial `python` workflow, (run time) / 100, against
   100 sequential calls of a trivial method on a raw Ray actor measured in the same invocation (target:
   <= 3 ms per durable step over raw Ray, on Postgres);
2. 1-step workflows through the warm run pool: start latency (created -> started, server stamps) p50/p99
   of runs started one at a time with a warm actor free, and runs/s from the first request to the last
   completion with --concurrency clients (targets: p50 <= 50 ms, >= 20 runs/s).

Run from the repository root: `.venv/bin/python bench/workflows.py [--database-url URL]`. A Postgres URL
is used in a scratch schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from platform_process import running_platform
from tasks import PASSWORD, _percentile, scratch_database

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


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


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


def run(args: argparse.Namespace) -> None:
    raw_s = raw_ray_calls(100)
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
                ).json()
                done = _wait(http, headers, started["execution_id"], poll_s=1.0)
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

    raw_ms = raw_s / 100 * 1000
    best = min(per_step)
    print(f"raw Ray actor call, sequential        {raw_ms:7.3f} ms per call (best of 5 x 100)")
    print(
        f"durable step (100-step python run)    {best:7.3f} ms per step (best of 3; all: "
        f"{', '.join(f'{v:.2f}' for v in per_step)})   overhead over raw Ray {best - raw_ms:6.3f} ms"
    )
    print(
        f"1-step runs, pool of {args.pool_size}, {args.concurrency} clients   {args.runs / span_s:7.1f} runs/s "
        f"({args.runs} runs in {span_s:.2f} s server time, {wall_s:.2f} s wall)   failed {failed}"
    )
    print(
        f"run start latency, a warm actor free (created -> started, {len(starts)} runs one at a time)   "
        f"p50 {statistics.median(starts):7.1f} ms   p99 {_percentile(starts, 0.99):7.1f} ms"
    )
    print(f"  under the load above, waiting for a free actor included: p50 {statistics.median(queued):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="default: the platform's embedded SQLite")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--latency-runs", type=int, default=50)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
