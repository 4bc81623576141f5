"""The head's gcs_server killed under a steady HTTP load, with the GCS's state in Redis (GCS fault tolerance):
what the API's clients see during the outage, how long until everything answers again, and whether anything
was lost.

The platform joins a `ray.cluster_utils.Cluster` of this machine (a `num_cpus=0` head whose GCS keeps its tables
in Redis, an API worker and a work node: tests/multinode/harness.py) and a hosted agent is deployed. Each trial:
client threads create tasks, read them, list them and start a workflow run now and then
(tests/multinode/gcs_load.py); after a few seconds the gcs_server is killed (SIGKILL), a new one is started
`--outage` seconds later on the same port, and the load goes on. Printed per trial and overall:
- during the outage (the kill to the restart): calls, error rate, 503s (and any without `Retry-After`), other
  errors, p50 and p99 latency;
- recovery: from the restart to the GCS answering again, and to the last failed call;
- losses: every task and run a 2xx answer created is looked up, and must end `completed`; the platform's actors
  and the agent's must be the same processes (never restarted).
Figures are printed, not asserted.

Run from the repository root, with a Postgres every node reaches (a database is created for the run and dropped)
and a Redis (Ray keeps the GCS's keys in its database 0 under a namespace made for the run, deleted at the end
with Ray's `cleanup_redis_storage`):
`ORCHESTRATOR_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
ORCHESTRATOR_TEST_REDIS_URL=redis://127.0.0.1:6379 .venv/bin/python bench/gcs_kill.py [--trials 3] [--outage 10]`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)
from tests.multinode import gcs_load, harness  # noqa: E402
from tests.multinode.harness import ClusterProcess, eventually, ok  # noqa: E402
from tests.platform_fixtures import _postgres_database  # noqa: E402

LIMIT_S = 120.0
BEFORE_S = 5.0  # load before the kill
AFTER_S = 15.0  # load after the restart


def processes(cluster: ClusterProcess, names: list[str]) -> dict[str, tuple[Any, ...]]:
    actors = cluster.actors()
    return {name: (actors[name]["state"], actors[name]["pid"], actors[name]["restarts"]) for name in names}


def by_kind(calls: list[gcs_load.Call], begin: float, end: float) -> str:
    """During the outage, per kind of call: how many, and their statuses."""
    counts: dict[str, dict[int, int]] = {}
    for call in calls:
        if begin <= call.began < end:
            statuses = counts.setdefault(call.kind, {})
            statuses[call.status] = statuses.get(call.status, 0) + 1
    return ", ".join(f"{kind} {dict(sorted(statuses.items()))}" for kind, statuses in sorted(counts.items()))


def trial(
    cluster: ClusterProcess, platform_url: str, owner: dict[str, str], agent_id: str, workflow: str, folder: Path,
    outage_s: float,
) -> dict[str, Any]:  # fmt: skip
    names = [*harness.SYSTEM_ACTORS, f"agent:{agent_id}"]
    before = processes(cluster, names)
    with httpx.Client(base_url=platform_url, timeout=30) as http:
        spare = gcs_load.deployed_agent(http, owner, deploy=False)
    load = gcs_load.Load(platform_url, owner, agent_id, workflow, folder, spare_agent_id=spare)
    load.start()
    time.sleep(BEFORE_S)
    killed_at = cluster.kill_gcs()
    load.deploy_spare()
    time.sleep(outage_s)
    restarted_at = cluster.start_gcs()
    # The cluster process reads the GCS's tables: its first answer is the new GCS serving the recovered state.
    after = processes(cluster, names)
    serving_at = time.time()
    time.sleep(AFTER_S)
    calls = load.stop()

    window = gcs_load.outage(calls, killed_at, serving_at)
    failed_after = [c.began + c.seconds for c in calls if c.began >= killed_at and not 200 <= c.status < 300]
    problems = [f"{name}: {before[name]} -> {after[name]}" for name in names if before[name] != after[name]]
    created = {c.created for c in calls if c.kind == "create" and c.created}
    runs = [c.created for c in calls if c.kind == "run" and c.created]
    with httpx.Client(base_url=platform_url, timeout=30) as http:

        def settled() -> dict[str, str]:
            stored = gcs_load.stored_tasks(http, owner, agent_id)
            return stored if all(stored.get(task) == "completed" for task in created) else {}

        try:
            eventually(settled, timeout_s=LIMIT_S, what="every task created completed", every_s=1.0)
        except AssertionError:
            stored = gcs_load.stored_tasks(http, owner, agent_id)
            problems.append(f"{sum(1 for t in created if t not in stored)} created tasks not stored")
            problems.append(f"{sum(1 for t in created if stored.get(t) not in (None, 'completed'))} not completed")
        for run_id in runs:
            try:
                eventually(
                    lambda r=run_id: harness.run(http, owner, r)["status"] == "completed",
                    timeout_s=LIMIT_S,
                    what=f"run {run_id} completed",
                    every_s=0.5,
                )
            except AssertionError as exc:
                problems.append(str(exc))
        deploy = [c for c in calls if c.kind == "deploy"]
        spare_deployed = bool(deploy) and 200 <= deploy[-1].status < 300
        if not spare_deployed:
            problems.append(f"the spare agent was not deployed: {[(c.status) for c in deploy]}")
        ok(http.post(f"/api/v1/agents/{spare}/undeploy", headers=owner))
    return {
        "outage": window,
        "gcs_back_s": serving_at - restarted_at,
        "recovered_s": max(0.0, max(failed_after, default=restarted_at) - restarted_at),
        "created": len(created),
        "runs": len(runs),
        "by_kind": by_kind(calls, killed_at, serving_at),
        "calls": len(calls),
        "problems": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds between the kill and the restart")
    args = parser.parse_args()
    base_url = os.environ.get("ORCHESTRATOR_TEST_DATABASE_URL")
    if not base_url:
        sys.exit("set ORCHESTRATOR_TEST_DATABASE_URL to a Postgres URL (a database is created in it and dropped)")
    redis = gcs_load.redis_address()
    if redis is None:
        sys.exit("set ORCHESTRATOR_TEST_REDIS_URL to a Redis that answers (Ray's GCS keeps its tables there)")
    from ray._private.gcs_utils import cleanup_redis_storage

    namespace = f"orchestrator-bench-{secrets.token_hex(4)}"
    folder = Path(tempfile.mkdtemp(prefix="gcs-kill-"))
    gcs_env = {"RAY_REDIS_ADDRESS": f"{redis[0]}:{redis[1]}", "RAY_external_storage_namespace": namespace}
    cluster = ClusterProcess(folder / "cluster.log", gcs_env)
    databases = _postgres_database(base_url)
    results: list[dict[str, Any]] = []
    try:
        cluster.add_node(num_cpus=harness.API_CPUS)
        platform = harness.start_platform(cluster, next(databases), folder / "platform", gcs_load.PLATFORM_ENV)
        cluster.add_node(num_cpus=harness.WORK_NODE_CPUS)
        try:
            with httpx.Client(base_url=platform.base_url, timeout=30) as http:
                owner = harness.register(http)
                workflow = harness.effect_workflow(http, owner)
                agent_id = gcs_load.deployed_agent(http, owner)
                eventually(
                    lambda: cluster.actors().get(f"agent:{agent_id}", {}).get("state") == "ALIVE",
                    timeout_s=LIMIT_S,
                    what="the agent's actor alive",
                )
            for number in range(args.trials):
                result = trial(
                    cluster, platform.base_url, owner, agent_id, workflow, folder / f"trial-{number}", args.outage
                )
                results.append(result)
                window: gcs_load.Outage = result["outage"]
                print(
                    f"trial {number + 1}: outage {window.calls} calls, errors {window.error_rate:.1%} "
                    f"({window.unavailable} x 503, {window.unavailable_without_retry_after} without Retry-After, "
                    f"others {window.other_errors or 'none'}), p50 {window.p50_s * 1000:.0f} ms, "
                    f"p99 {window.p99_s * 1000:.0f} ms; GCS back {result['gcs_back_s']:.1f} s after the restart, "
                    f"last failed call {result['recovered_s']:.1f} s after it; {result['created']} tasks and "
                    f"{result['runs']} runs created, {result['calls']} calls; "
                    f"{'; '.join(result['problems']) or 'nothing lost, no actor restarted'}\n"
                    f"  during the outage, by kind (status: count): {result['by_kind']}",
                    flush=True,
                )
        finally:
            platform.stop()
    finally:
        databases.close()
        cluster.close()
        deleted = cleanup_redis_storage(redis[0], redis[1], "", False, namespace)
        print(f"GCS keys of namespace {namespace!r} deleted from Redis: {deleted}")

    if results:
        windows: list[gcs_load.Outage] = [r["outage"] for r in results]
        calls = sum(w.calls for w in windows)
        errors = sum(w.errors for w in windows)
        print(
            f"\n{len(results)} GCS kills, {args.outage:.0f} s each: during the outages {calls} calls, "
            f"error rate {errors / max(calls, 1):.1%}, 503s {sum(w.unavailable for w in windows)}, "
            f"other errors {sum(len(w.other_errors) for w in windows)}; p50 "
            f"{max(w.p50_s for w in windows) * 1000:.0f} ms, p99 {max(w.p99_s for w in windows) * 1000:.0f} ms "
            f"(worst trial); GCS back after the restart in {max(r['gcs_back_s'] for r in results):.1f} s; "
            f"problems {sum(len(r['problems']) for r in results)}"
        )


if __name__ == "__main__":
    main()
