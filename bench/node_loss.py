"""A worker node lost under load: how long until its runs run again on another node, and its agent is back.

The platform joins a `ray.cluster_utils.Cluster` of this machine (a `num_cpus=0` head, an API worker and one
work node: tests/multinode/harness.py), with Ray's default health checks. Each trial: a hosted agent busy with a
long task, a heavy run (an actor of its own, 3 CPUs) and two warm-pool runs on the work node, each inside a
step that records an effect; a spare work node joins; the work node is removed (every process killed with
SIGKILL, or, with `--graceful`, stopped with SIGTERM as a drained or deleted pod is); then, from the moment of
the removal:
- each run's interrupted step begins again on the spare (the step writes when and where it began);
- the agent's actor is alive on the spare (Ray's actor table, polled every 0.2 s).
The spare is the next trial's work node. Figures are printed, not asserted; effects applied twice or runs that
did not complete are counted and printed.

Run from the repository root, with a Postgres every node reaches (a database is created for the run and dropped):
`ORCHESTRATOR_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres .venv/bin/python
bench/node_loss.py [--trials 10] [--graceful]`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)
from tests.multinode import harness  # noqa: E402
from tests.multinode.harness import ClusterProcess, eventually, ok  # noqa: E402
from tests.platform_fixtures import _postgres_database  # noqa: E402

STEP_S = 6.0
LIMIT_S = 120.0
RUNS = ("heavy", "warm-0", "warm-1")


def trial(
    cluster: ClusterProcess, http: httpx.Client, owner: dict[str, str], agent_id: str, workflow: str, work: str,
    folder: Path, *, graceful: bool,
) -> tuple[str, dict[str, float], list[str]]:  # fmt: skip
    """One node lost; returns the spare (the next work node), seconds per run and for the agent, and problems."""
    agent = f"agent:{agent_id}"
    # The work node hosts the agent and the warm pool (restarted there after the previous trial's loss, once the
    # actors that took the runs over had ended and freed its CPUs).
    on_work = [agent, *(f"run-pool:{index}" for index in range(harness.RUN_POOL_SIZE))]

    def settled() -> bool:
        actors = cluster.actors()
        return all(actors.get(name, {}).get("state") == "ALIVE" and actors[name]["node_id"] == work for name in on_work)

    eventually(settled, timeout_s=LIMIT_S, what="the agent and the warm pool alive on the work node")
    task = ok(http.post("/api/v1/tasks", headers=owner, json={"agentId": agent_id, "payload": {"seconds": 600}}))
    effects = {name: folder / name for name in RUNS}
    runs = {
        name: harness.execute(
            http, owner, workflow, effects[name], sleep_s=STEP_S, cpu=harness.HEAVY_RUN_CPU if name == "heavy" else 0
        )
        for name in RUNS
    }

    def began(step: str) -> dict[str, list[tuple[str, float]]]:
        return {
            name: [(node, at) for key, node, at in harness.placed(effects[name]) if key == f"{runs[name]}:{step}:1"]
            for name in RUNS
        }

    eventually(lambda: all(began("first").values()), timeout_s=LIMIT_S, what="every run in its first step")
    spare = cluster.add_node(num_cpus=harness.WORK_NODE_CPUS)
    eventually(lambda: all(began("second").values()), timeout_s=LIMIT_S, what="every run in its second step")
    eventually(
        lambda: ok(http.get(f"/api/v1/tasks/{task['id']}", headers=owner))["status"] == "in_progress",
        timeout_s=LIMIT_S,
        what="the agent's task running",
    )
    removed_at = cluster.call("remove_node", node_id=work, graceful=graceful)["removed_at"]
    problems = [
        f"{name}: its second step ran on {node[:8]}, not on the lost node, or ended before the loss"
        for name, executions in began("second").items()
        for node, at in executions[:1]
        if node != work or removed_at - at > STEP_S
    ]

    seconds: dict[str, float] = {}
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline and len(seconds) < len(RUNS) + 1:
        for name, executions in began("second").items():
            if name not in seconds and len(executions) > 1:
                seconds[name] = executions[-1][1] - removed_at
        if "agent" not in seconds:
            actor = cluster.actors().get(agent, {})
            if actor.get("state") == "ALIVE" and actor.get("node_id") == spare:
                seconds["agent"] = time.time() - removed_at
        time.sleep(0.2)

    problems += [f"{name}: not back within {LIMIT_S:.0f}s" for name in [*RUNS, "agent"] if name not in seconds]
    for name, run_id in runs.items():
        done = eventually(
            lambda r=run_id: (x := harness.run(http, owner, r))["status"] not in ("pending", "running") and x,
            timeout_s=LIMIT_S,
            what=f"run {name} ended",
        )
        if done["status"] != "completed":
            problems.append(f"{name}: {done['status']} {done.get('error')}")
        if harness.applied(effects[name]) != sorted({f"{run_id}_first_1", f"{run_id}_second_1"}):
            problems.append(f"{name}: effects {harness.applied(effects[name])}")
    return spare, seconds, problems


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    return (
        f"p50 {statistics.median(ordered):5.1f} s   min {ordered[0]:5.1f}   max {ordered[-1]:5.1f}   "
        f"all: {' '.join(f'{v:.1f}' for v in ordered)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--graceful", action="store_true", help="SIGTERM (a drained node) instead of SIGKILL")
    args = parser.parse_args()
    base_url = os.environ.get("ORCHESTRATOR_TEST_DATABASE_URL")
    if not base_url:
        sys.exit("set ORCHESTRATOR_TEST_DATABASE_URL to a Postgres URL (a database is created in it and dropped)")

    folder = Path(tempfile.mkdtemp(prefix="node-loss-"))
    cluster = ClusterProcess(folder / "cluster.log")
    databases = _postgres_database(base_url)
    try:
        cluster.add_node(num_cpus=harness.API_CPUS)
        platform = harness.start_platform(cluster, next(databases), folder / "platform")
        work = cluster.add_node(num_cpus=harness.WORK_NODE_CPUS)
        results: list[dict[str, float]] = []
        try:
            with httpx.Client(base_url=platform.base_url, timeout=30) as http:
                owner = harness.register(http)
                workflow = harness.effect_workflow(http, owner)
                agent = ok(
                    http.post(
                        "/api/v1/agents",
                        headers=owner,
                        json={
                            "name": f"sleeper-{secrets.token_hex(3)}",
                            "max_concurrent_tasks": 1,
                            "resource_limits": {"cpu": harness.AGENT_CPU},
                            "configuration": {"handler": "tests.fixtures.handlers:sleep"},
                        },
                    )
                )
                ok(http.post(f"/api/v1/agents/{agent['id']}/deploy", headers=owner))
                for number in range(args.trials):
                    work, seconds, problems = trial(
                        cluster, http, owner, agent["id"], workflow, work, folder / f"trial-{number}",
                        graceful=args.graceful,
                    )  # fmt: skip
                    results.append(seconds)
                    shown = "  ".join(f"{name} {value:5.1f}" for name, value in sorted(seconds.items()))
                    print(f"trial {number + 1:2d}: {shown}  {'; '.join(problems) or 'ok'}", flush=True)
        finally:
            platform.stop()
    finally:
        databases.close()
        cluster.close()

    kind = "SIGTERM (graceful)" if args.graceful else "SIGKILL"
    print(f"\nnode lost by {kind}, {len(results)} trials, seconds from the removal:")
    every_run = [max(r[name] for name in RUNS) for r in results if all(name in r for name in RUNS)]
    if every_run:
        print(f"  all its runs running again    {describe(every_run)}")
    for name in [*RUNS, "agent"]:
        values = [r[name] for r in results if name in r]
        if values:
            label = {"heavy": "heavy run (own actor)", "agent": "agent's actor alive"}.get(name, f"{name} run (pool)")
            print(f"  {label:<29} {describe(values)}")


if __name__ == "__main__":
    main()
