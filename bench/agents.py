"""What a deployed agent costs: deploy latency, and processes/memory of 50 agents busy vs idle.

Through the platform as `orchestrator up` runs it, in one run:
1. deploy latency: `POST /agents/{id}/deploy` until it answers `active` (the actor is placed, has loaded
   the agent from the database and answered), p50/p95 over --agents deploys;
2. the same agents kept busy (hosted agents, each given a 100 ms task every 5 s from its deploy on): count
   of agent actor processes and their resident memory, and a task's latency from creation to completed;
3. the same agents after the idle timeout: the count and memory again (target: no process per idle agent);
4. re-activation: a task for a passivated agent, from creation until completed (a new process), p50.

Run from the repository root: `.venv/bin/python bench/agents.py [--agents 50] [--database-url URL]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from platform_process import running_platform

PASSWORD = "bench-password-123"  # noqa: S105 (a throwaway account of the benchmark)
IDLE_TIMEOUT_S = 30
WORK_EVERY_S = 5


def agent_processes() -> tuple[int, float]:
    """(count, resident MB) of processes running an AgentActor on this machine."""
    count, rss = 0, 0.0
    for process in psutil.process_iter(["cmdline", "memory_info"]):
        cmdline = process.info["cmdline"] or []
        # Ray titles an actor's process `ray::AgentActor`, or `ray::<name>:AgentActor.<method>` while busy.
        if cmdline and cmdline[0].startswith("ray::") and "AgentActor" in cmdline[0]:
            count += 1
            rss += process.info["memory_info"].rss / (1024 * 1024)
    return count, rss


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-agents-"))
    extra = {
        "ORCHESTRATOR_DATABASE_URL": args.database_url,
        "ORCHESTRATOR_AGENT_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
        # The agents' work is the test suite's `sleep` handler, imported by Ray workers from the repository.
        "ORCHESTRATOR_AGENT_CODE_MODULES": "tests.fixtures",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    with running_platform(data_dir, **extra) as (base, startup_s), httpx.Client(base_url=base, timeout=120) as http:
        http.post("/api/v1/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
        token = http.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        baseline = agent_processes()

        ids: list[str] = []
        deploy_ms: list[float] = []
        tasks_ms: list[float] = []
        stop_working = threading.Event()

        def run_task(agent_id: str) -> float:
            """A task for the agent, from the request until it is recorded completed."""
            started = time.perf_counter()
            task = http.post("/api/v1/tasks", headers=headers, json={"agentId": agent_id, "payload": {"seconds": 0.1}})
            task.raise_for_status()
            while http.get(f"/api/v1/tasks/{task.json()['id']}", headers=headers).json()["status"] != "completed":
                time.sleep(0.02)
            return (time.perf_counter() - started) * 1000

        def keep_busy() -> None:
            # Each deployed agent gets a task every few seconds, from its deploy on: busy agents. Eight at a
            # time, so that a round over 50 agents stays well inside the idle timeout.
            with ThreadPoolExecutor(8) as pool:
                while not stop_working.wait(WORK_EVERY_S):
                    tasks_ms.extend(pool.map(run_task, list(ids)))

        worker = threading.Thread(target=keep_busy, daemon=True)
        worker.start()
        for index in range(args.agents):
            agent = http.post(
                "/api/v1/agents",
                headers=headers,
                json={
                    "name": f"worker-{index}",
                    "configuration": {"handler": "tests.fixtures.handlers:sleep"},
                },
            )
            agent_id = agent.json()["id"]
            started = time.perf_counter()
            response = http.post(f"/api/v1/agents/{agent_id}/deploy", headers=headers)
            deploy_ms.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200 or response.json()["status"] != "active":
                raise SystemExit(f"deploy {index} failed: {response.status_code} {response.text[:300]}")
            ids.append(agent_id)

        time.sleep(2 * WORK_EVERY_S)  # every agent has run a task since the last deploy
        busy = agent_processes()
        stop_working.set()
        worker.join()
        busy_tasks = tasks_ms[-len(ids) :]

        deadline = time.monotonic() + IDLE_TIMEOUT_S + 120
        while time.monotonic() < deadline:
            agents = http.get("/api/v1/agents", headers=headers, params={"limit": 100}).json()["agents"]
            if all(agent["passivated_at"] for agent in agents if agent["id"] in ids):
                break
            time.sleep(1)
        # The database says passivated before each process exits: wait (bounded) for the processes to go.
        all_passivated = time.monotonic()
        while agent_processes()[0] and time.monotonic() - all_passivated < 120:
            time.sleep(1)
        release_s = time.monotonic() - all_passivated
        idle = agent_processes()
        passivated = sum(1 for agent in agents if agent["id"] in ids and agent["passivated_at"])

        reactivate_ms = [run_task(agent_id) for agent_id in ids[: min(10, len(ids))]]
        for agent_id in ids:
            http.post(f"/api/v1/agents/{agent_id}/undeploy", headers=headers)

    print(f"platform startup                     {startup_s:6.1f} s")
    print(
        f"deploy latency (request -> active)   p50 {statistics.median(deploy_ms):7.0f} ms   "
        f"p95 {_percentile(deploy_ms, 0.95):7.0f} ms   ({len(deploy_ms)} deploys)"
    )
    print(f"task on a live agent (100 ms work)   p50 {statistics.median(busy_tasks):7.0f} ms   (create -> completed)")
    print(
        f"task on an idle agent (re-activates) p50 {statistics.median(reactivate_ms):7.0f} ms   "
        f"({len(reactivate_ms)} agents)"
    )
    print(f"agent processes before deploying     {baseline[0]:4d}   {baseline[1]:8.0f} MB resident")
    print(f"{args.agents} agents deployed and busy        {busy[0]:4d}   {busy[1]:8.0f} MB resident")
    print(
        f"{args.agents} agents after idle timeout       {idle[0]:4d}   {idle[1]:8.0f} MB resident   "
        f"({passivated} passivated, status still active)"
    )
    print(f"processes gone after the last passivation  {release_s:5.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--database-url", default="", help="default: the platform's embedded SQLite")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
