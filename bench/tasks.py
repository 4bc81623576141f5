"""Tasks through the platform as `orchestrator up` runs it, in one run:

1. dispatch latency: a task created for routing until the router has recorded it `assigned` (the task's
   own `created_at` → `assigned_at`, stamped by the server), p50/p99, with one agent of free capacity;
2. `POST /api/v1/tasks` throughput and p50/p99 at --concurrency clients, against `GET /health` in the same
   run as the ceiling (target: task creation at >= 50% of it);
3. --approvals pending approvals (P0 tasks waiting for a human): approval actor processes (target: none)
   and the platform's resident memory before and after.

Run from the repository root: `.venv/bin/python bench/tasks.py [--database-url URL]`. A Postgres URL is
used in a scratch schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))
from http_load import load
from platform_process import running_platform

PASSWORD = "bench-password-123"  # noqa: S105 (a throwaway account of the benchmark)


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    if not url.startswith("postgresql"):
        yield url
        return
    schema = f"bench_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def ray_processes() -> tuple[int, int, float]:
    """(all Ray processes, approval actor processes, resident MB of all Ray processes) on this machine."""
    count, approvals, rss = 0, 0, 0.0
    for process in psutil.process_iter(["cmdline", "memory_info"]):
        title = (process.info["cmdline"] or [""])[0]
        if title.startswith("ray::") or "raylet" in title or "gcs_server" in title:
            count += 1
            approvals += "ApprovalActor" in title
            rss += process.info["memory_info"].rss / (1024 * 1024)
    return count, approvals, rss


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _row(name: str, result: dict) -> str:
    return f"{name:<28} {result['rps']:8.1f} req/s   p50 {result['p50_ms']} ms   p99 {result['p99_ms']} ms"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> None:
    with scratch_database(args.database_url) as database_url, tempfile.TemporaryDirectory() as tmp:
        extra = {"ORCHESTRATOR_DATABASE_URL": database_url, "ORCHESTRATOR_ROUTER_TICK_S": "1"}
        with (
            running_platform(Path(tmp) / "platform", **extra) as (base, _),
            httpx.Client(base_url=base, timeout=60) as http,
        ):
            http.post("/api/v1/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
            token = http.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD})
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

            # 1. Dispatch latency, one task at a time, an agent with room for all of them.
            agent = http.post(
                "/api/v1/agents", headers=headers, json={"name": "sink", "mode": "external", "maxConcurrentTasks": 1000}
            ).json()
            assert http.post(f"/api/v1/agents/{agent['id']}/deploy", headers=headers).status_code == 200
            dispatch_ms = []
            for _ in range(args.dispatches):
                task = http.post("/api/v1/tasks", headers=headers, json={"type": "general", "priority": "P2"}).json()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    current = http.get(f"/api/v1/tasks/{task['id']}", headers=headers).json()
                    if current["assigned_at"]:
                        delta = _stamp(current["assigned_at"]) - _stamp(current["created_at"])
                        dispatch_ms.append(delta.total_seconds() * 1000)
                        break
                    time.sleep(0.02)  # the poll competes with the server for 2 cores: keep it light
            http.post(f"/api/v1/agents/{agent['id']}/undeploy", headers=headers)

            # 2. Creation throughput against the health ceiling, in the same run.
            options = {
                "concurrency": args.concurrency,
                "requests": args.requests,
                "duration": args.duration,
                "warmup": 100,
            }
            health = load(f"{base}/health", **options)
            create = load(
                f"{base}/api/v1/tasks",
                method="POST",
                body='{"type": "feature", "priority": "P3"}',
                headers={**headers, "Content-Type": "application/json"},
                **options,
            )

            # 3. Pending approvals: P0 tasks waiting for a human.
            before = ray_processes()

            def gated(_: int) -> int:
                return http.post(
                    "/api/v1/tasks", headers=headers, json={"type": "incident", "priority": "P0"}
                ).status_code

            with ThreadPoolExecutor(8) as pool:
                created = sum(1 for code in pool.map(gated, range(args.approvals)) if code == 201)
            pending = http.get("/api/v1/approvals/pending", headers=headers, params={"limit": 1}).json()["count"]
            after = ray_processes()

    ratio = create["rps"] / health["rps"] if health["rps"] else 0.0
    print(
        f"dispatch, created -> assigned (server stamps)  p50 {statistics.median(dispatch_ms):7.1f} ms   "
        f"p99 {_percentile(dispatch_ms, 0.99):7.1f} ms   ({len(dispatch_ms)} tasks)"
    )
    print(_row("GET /health (ceiling)", health))
    print(_row("POST /api/v1/tasks", create) + f"   = {ratio:.2f}x health   statuses {create['statuses']}")
    print(f"pending approvals            {pending} ({created} P0 tasks created)")
    print(
        f"Ray processes before / after {before[0]} / {after[0]}   approval actor processes {after[1]}   "
        f"Ray resident memory {before[2]:.0f} MB / {after[2]:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="default: the platform's embedded SQLite")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--dispatches", type=int, default=200)
    parser.add_argument("--approvals", type=int, default=10_000)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
