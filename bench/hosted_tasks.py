"""A task on a hosted agent, from its creation to `completed`, beyond the task's own run time.

Through the platform as `orchestrator up` runs it, in one run:
1. live agents: --agents hosted agents deployed (their actors up), then --tasks tasks of --work-ms each
   posted by --concurrency clients; per task, the server's stamps: created -> assigned (the router),
   assigned -> started (the agent's actor took it), started -> completed minus the work (the handler's
   return recorded), and the whole overhead (created -> completed minus the work). Target: p50 <= 50 ms
   at 8 concurrent tasks;
2. passivated agents: the same agents after their idle timeout (no process), one task each: created ->
   completed, a process start included. Target: p50 <= 1 s.

The baseline, measured in the same run: the handler called directly in this process (its own run time
and the timer's overshoot), so that the overhead is the platform's alone.

Run from the repository root: `.venv/bin/python bench/hosted_tasks.py [--database-url URL]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from platform_process import running_platform
from tasks import PASSWORD, _percentile, _stamp, scratch_database

IDLE_TIMEOUT_S = 5


def _ms(later: str, earlier: str) -> float:
    return (_stamp(later) - _stamp(earlier)).total_seconds() * 1000


def direct_ms(work_s: float, calls: int = 20) -> float:
    """The handler itself, called in this process: its run time (the floor of any task of it)."""
    from tests.fixtures.handlers import sleep

    took = []
    for _ in range(calls):
        began = time.perf_counter()
        sleep({"seconds": work_s})
        took.append((time.perf_counter() - began) * 1000)
    return statistics.median(took)


def _summary(name: str, values: list[float], target: str = "") -> str:
    return f"{name:<44} p50 {statistics.median(values):8.1f} ms   p99 {_percentile(values, 0.99):8.1f} ms" + (
        f"   ({target})" if target else ""
    )


def run(args: argparse.Namespace) -> None:
    work_s = args.work_ms / 1000
    floor_ms = direct_ms(work_s)
    with scratch_database(args.database_url) as database_url, tempfile.TemporaryDirectory() as tmp:
        extra = {
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_AGENT_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
            "ORCHESTRATOR_AGENT_CODE_MODULES": "tests.fixtures",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        with (
            running_platform(Path(tmp) / "platform", **extra) as (base, _),
            httpx.Client(base_url=base, timeout=120) as http,
        ):
            http.post("/api/v1/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
            token = http.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD})
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            ids = []
            for index in range(args.agents):
                agent = http.post(
                    "/api/v1/agents",
                    headers=headers,
                    json={
                        "name": f"hosted-{index}",
                        "max_concurrent_tasks": args.concurrency,
                        "configuration": {"handler": "tests.fixtures.handlers:sleep"},
                    },
                ).json()
                deployed = http.post(f"/api/v1/agents/{agent['id']}/deploy", headers=headers)
                assert deployed.status_code == 200 and deployed.json()["status"] == "active", deployed.text
                ids.append(agent["id"])

            def one_task(index: int) -> dict:
                body = {"agentId": ids[index % len(ids)], "payload": {"seconds": work_s}}
                created = http.post("/api/v1/tasks", headers=headers, json=body)
                assert created.status_code == 201, created.text
                task_id = created.json()["id"]
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    task = http.get(f"/api/v1/tasks/{task_id}", headers=headers).json()
                    if task["status"] in ("completed", "failed", "cancelled"):
                        assert task["status"] == "completed", task
                        return task
                    time.sleep(0.02)
                raise TimeoutError(task_id)

            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(one_task, range(2 * args.concurrency)))  # warm-up: every agent's handler imported
                live = list(pool.map(one_task, range(args.tasks)))

            # Passivated: wait (bounded) until every agent has given its process back, then one task each.
            deadline = time.monotonic() + IDLE_TIMEOUT_S + 120
            while time.monotonic() < deadline:
                agents = http.get("/api/v1/agents", headers=headers, params={"limit": 100}).json()["agents"]
                if all(agent["passivated_at"] for agent in agents if agent["id"] in ids):
                    break
                time.sleep(0.5)
            cold = [one_task(index) for index in range(len(ids))]

    def overhead(task: dict) -> float:
        return _ms(task["completed_at"], task["created_at"]) - floor_ms

    print(f"the handler called directly ({args.work_ms:.0f} ms of work)   {floor_ms:8.1f} ms (the floor)")
    print(f"live agents: {args.agents}, {args.tasks} tasks, {args.concurrency} clients")
    print(_summary("  created -> assigned (router)", [_ms(t["assigned_at"], t["created_at"]) for t in live]))
    print(_summary("  assigned -> started (agent's actor)", [_ms(t["started_at"], t["assigned_at"]) for t in live]))
    print(
        _summary(
            "  started -> completed, minus the work",
            [_ms(t["completed_at"], t["started_at"]) - floor_ms for t in live],
        )
    )
    over = [overhead(t) for t in live]
    print(_summary("  overhead: created -> completed, minus work", over, "target p50 <= 50 ms"))
    print(f"  ratio of the whole to the work alone: {statistics.median(over) / floor_ms + 1:5.2f}x")
    print(
        _summary(
            f"passivated agents ({len(cold)}): created -> completed",
            [_ms(t["completed_at"], t["created_at"]) for t in cold],
            "a process start included; target p50 <= 1000 ms",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="default: the platform's embedded SQLite")
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--work-ms", type=float, default=100.0)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
