"""Python-defined workflows through the platform as `orchestrator up` runs it, in one run: the time from
`client.workflows.submit` to the result of a 1-step workflow whose step is a function of `__main__`,

1. first submission (the code is uploaded), and
2. repeats (the code is already on the platform: only a GET asks for it),

against the baseline of the same 1-step run of an installed function (`tests.fixtures.workflow_nodes`) on
a warm pooled actor. A run of shipped code gets an actor of its own (a process start), which is most of the
difference.

Run from the repository root: `.venv/bin/python bench/python_workflows.py [--database-url URL] [--runs N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from orchestrator_sdk import Client, Workflow
from platform_process import running_platform
from tasks import PASSWORD, scratch_database

ROOT = Path(__file__).resolve().parents[1]
FACTOR = 3


def triple(state):
    return {"value": state["value"] * FACTOR}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with scratch_database(args.database_url) as database_url, tempfile.TemporaryDirectory() as tmp:
        env = {
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_AGENT_CODE_MODULES": "tests.fixtures",
            "ORCHESTRATOR_RATE_LIMIT_EXECUTIONS": "100000/h",
            "PYTHONPATH": str(ROOT),
        }
        with running_platform(Path(tmp) / "platform", **env) as (base, ready_s):
            import httpx

            httpx.post(f"{base}/api/v1/auth/register", json={"email": "bench@example.com", "password": PASSWORD})
            with Client(base, email="bench@example.com", password=PASSWORD) as client:  # the first account: admin
                agent = client.agents.create(name="baseline")
                graph = {
                    "nodes": [
                        {"id": "in", "type": "input"},
                        {
                            "id": "add",
                            "type": "python",
                            "config": {"function": "tests.fixtures.workflow_nodes:add_one"},
                        },
                        {"id": "out", "type": "output"},
                    ],
                    "edges": [{"source": "in", "target": "add"}, {"source": "add", "target": "out"}],
                }
                installed = client.workflows.create(agent.id, name="installed", workflow_data=graph)
                baseline = []
                for index in range(args.runs + 1):
                    started = time.perf_counter()
                    client.workflows.execute(installed.id, {"value": 1}).wait(timeout=120, progress=False)
                    if index:  # the first warms the pool
                        baseline.append(time.perf_counter() - started)
                shipped = []
                for _ in range(args.runs + 1):
                    workflow = Workflow("shipped").step(triple)
                    started = time.perf_counter()
                    run = client.workflows.submit(workflow, {"value": 14}).wait(timeout=120, progress=False)
                    shipped.append(time.perf_counter() - started)
                    assert run.output["value"] == 42, run.output
    first, repeats = shipped[0], shipped[1:]
    base_ms = statistics.median(baseline) * 1000
    print(f"platform ready in {ready_s:.1f}s ({'Postgres' if database_url.startswith('postgresql') else 'SQLite'})")
    print(f"baseline: an installed function's 1-step run on a warm pooled actor, median {base_ms:.0f} ms")
    print(f"python-defined 1-step workflow, first submission (code uploaded): {first * 1000:.0f} ms")
    print(
        f"repeats (code already shipped), median of {len(repeats)}: {statistics.median(repeats) * 1000:.0f} ms; "
        f"ratio to the baseline {statistics.median(repeats) * 1000 / base_ms:.1f}x"
    )


if __name__ == "__main__":
    main()
