"""Approvals through the platform as `orchestrator up` runs it, in one run: from the request that approves
a run waiting at an approval node to the run's next step starting (server stamps), p50/p95 over N trials,
against the baseline of starting the same run without the approval (request to its first step starting).
The decision goes through the approval's actor, which records it and hands the run back to the run pool.

Run from the repository root: `.venv/bin/python bench/approvals.py [--database-url URL] [--trials N]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from platform_process import running_platform
from tasks import PASSWORD, _percentile, scratch_database

ROOT = Path(__file__).resolve().parents[1]
ADD = {"id": "add", "type": "python", "config": {"function": "tests.fixtures.workflow_nodes:add_one"}}


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _account(http: httpx.Client, name: str) -> dict[str, str]:
    http.post("/api/v1/auth/register", json={"email": f"{name}@example.com", "password": PASSWORD})
    token = http.post("/api/v1/auth/login", json={"email": f"{name}@example.com", "password": PASSWORD}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def _workflow(http: httpx.Client, headers: dict, gated: bool) -> str:
    agent = http.post("/api/v1/agents", headers=headers, json={"name": "bench"}).json()
    nodes = [{"id": "in", "type": "input"}]
    if gated:
        nodes.append({"id": "gate", "type": "approval", "config": {"reason": "Go on?"}})
    nodes += [ADD, {"id": "out", "type": "output"}]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in pairwise(nodes)]
    created = http.post(
        f"/api/v1/agents/{agent['id']}/workflows",
        headers=headers,
        json={"name": "gated" if gated else "plain", "workflow_data": {"nodes": nodes, "edges": edges}},
    )
    return created.json()["id"]


def _step_started(http: httpx.Client, headers: dict, run_id: str, node_id: str) -> float:
    while True:
        run = http.get(f"/api/v1/executions/{run_id}", headers=headers).json()
        for step in run.get("steps") or []:
            if step["node_id"] == node_id:
                return _stamp(step["started_at"])
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    env_extra = {"ORCHESTRATOR_AGENT_CODE_MODULES": "tests.fixtures", "PYTHONPATH": str(ROOT)}
    with scratch_database(args.database_url) as database_url, tempfile.TemporaryDirectory() as tmp:
        env = {**env_extra, "ORCHESTRATOR_DATABASE_URL": database_url, "ORCHESTRATOR_RATE_LIMIT_EXECUTIONS": "100000/h"}
        with (
            running_platform(Path(tmp) / "platform", **env) as (base, ready_s),
            httpx.Client(base_url=base, timeout=60) as http,
        ):
            admin = _account(http, "admin")  # the first account: may decide anyone's approval
            user = _account(http, "user")
            gated, plain = _workflow(http, user, True), _workflow(http, user, False)
            resumed, started = [], []
            for trial in range(args.trials + 1):  # the first of each warms the pool and the actors
                sent = time.time()
                run_id = http.post(
                    f"/api/v1/workflows/{plain}/execute", headers=user, json={"input_data": {"value": 1}}
                ).json()["execution_id"]
                first = _step_started(http, user, run_id, "in")
                run_id = http.post(
                    f"/api/v1/workflows/{gated}/execute", headers=user, json={"input_data": {"value": 1}}
                ).json()["execution_id"]
                while (run := http.get(f"/api/v1/executions/{run_id}", headers=user).json())["status"] != "waiting":
                    time.sleep(0.01)
                approve_sent = time.time()
                decided = http.post(f"/api/v1/approvals/{run['waiting_on']['id']}/approve", headers=admin)
                assert decided.status_code == 200, decided.text
                next_step = _step_started(http, user, run_id, "add")
                if trial:
                    started.append(first - sent)
                    resumed.append(next_step - approve_sent)
    ms = lambda values, q: _percentile(values, q) * 1000  # noqa: E731
    print(f"platform ready in {ready_s:.1f}s ({'Postgres' if database_url.startswith('postgresql') else 'SQLite'})")
    print(
        f"baseline: execute request -> first step started, p50 {ms(started, 0.5):.0f} ms, "
        f"p95 {ms(started, 0.95):.0f} ms"
    )
    print(
        f"approve request -> the run's next step started ({len(resumed)} trials): p50 {ms(resumed, 0.5):.0f} ms, "
        f"p95 {ms(resumed, 0.95):.0f} ms; ratio to the baseline {ms(resumed, 0.5) / ms(started, 0.5):.1f}x"
    )


if __name__ == "__main__":
    main()
