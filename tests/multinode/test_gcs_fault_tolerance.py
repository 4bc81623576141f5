"""GCS fault tolerance (issue 21, item 2): the head's gcs_server killed under load, with its tables in Redis
(`RAY_REDIS_ADDRESS`, as `ray start --head` and KubeRay's `gcsFaultToleranceOptions` set it; docs/deploy.md "GCS
fault tolerance"), on the same `ray.cluster_utils.Cluster` shape as test_node_loss.py.

While the GCS is down the API keeps answering: task creation, reads, lists and new runs succeed (they go to the
database and to live actors' handles); what needs the GCS (Ray's view of an agent's actor, deploying an agent,
which creates an actor) answers 503 with `Retry-After` at once. The platform's actors and the agent's keep their
processes. A new gcs_server recovers the cluster from Redis: the deploy refused during the outage then succeeds, and
every task and run a 2xx answer created completes. At the end the cluster's keys are deleted from Redis the way
docs/deploy.md says (Ray's `cleanup_redis_storage` on the cluster's storage namespace), and none is left.

Skips without Postgres (every node reaches one database) or without a Redis that answers at
ORCHESTRATOR_TEST_REDIS_URL (CI sets both).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import POSTGRES_ENV
from tests.multinode import gcs_load, harness
from tests.multinode.gcs_load import Call
from tests.multinode.harness import Cluster, ClusterProcess, eventually, ok
from tests.platform_fixtures import Platform, _postgres_database

pytestmark = pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV),
    reason=f"the multi-node tests need Postgres (every node reaches one database): {POSTGRES_ENV} (CI sets it)",
)

LIMIT_S = 60.0
NEEDS_GCS = ("container", "deploy")  # the load's calls that cannot be answered without the GCS


@pytest.fixture(scope="module")
def gcs_redis() -> tuple[str, int]:
    address = gcs_load.redis_address()
    if address is None:
        pytest.skip("GCS fault tolerance needs a Redis that answers at ORCHESTRATOR_TEST_REDIS_URL (CI sets it)")
    return address


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, gcs_redis: tuple[str, int]) -> Iterator[Cluster]:
    """tests/multinode/conftest.py's cluster, its head's GCS keeping its tables in Redis under a namespace of its
    own; the namespace's keys deleted at the end, and checked gone."""
    import redis
    from ray._private.gcs_utils import cleanup_redis_storage

    host, port = gcs_redis
    namespace = f"orchestrator-test-{secrets.token_hex(4)}"
    gcs_env = {"RAY_REDIS_ADDRESS": f"{host}:{port}", "RAY_external_storage_namespace": namespace}
    process = ClusterProcess(tmp_path_factory.mktemp("gcs-ft") / "cluster.log", gcs_env)
    client = redis.Redis(host=host, port=port)
    try:
        assert client.keys(f"RAY{namespace}@*"), "the GCS keeps no table in Redis"
        yield Cluster(process, process.add_node(num_cpus=harness.API_CPUS), "")
    finally:
        process.close()
        # A deleted cluster's tables stay in Redis (a new GCS with the same namespace would recover them).
        assert client.keys(f"RAY{namespace}@*")
        cleanup_redis_storage(host, port, "", False, namespace)
        assert client.keys(f"RAY{namespace}@*") == []
        client.close()


@pytest.fixture(scope="module")
def platform(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """tests/multinode/conftest.py's platform, with the load's rate limit (`gcs_load.PLATFORM_ENV`)."""
    databases = _postgres_database(os.environ[POSTGRES_ENV])
    try:
        folder = tmp_path_factory.mktemp("platform")
        platform = harness.start_platform(cluster.process, next(databases), folder, gcs_load.PLATFORM_ENV)
        cluster.work = cluster.process.add_node(num_cpus=harness.WORK_NODE_CPUS)
        try:
            yield platform
        finally:
            platform.stop()
    finally:
        databases.close()


def _processes(cluster: Cluster, names: list[str]) -> dict[str, tuple[Any, ...]]:
    actors = cluster.process.actors()
    return {name: (actors[name]["state"], actors[name]["pid"], actors[name]["restarts"]) for name in names}


def _since(load: gcs_load.Load, began: float, kind: str, status: int) -> list[Call]:
    return [c for c in list(load.calls) if c.began >= began and c.kind == kind and c.status == status]


def test_the_api_and_live_actors_ride_out_a_gcs_restart_with_nothing_lost(
    cluster: Cluster, platform: Platform, http: httpx.Client, owner: dict[str, str], tmp_path: Path
) -> None:
    # `orchestrator up --address` says the joined cluster's GCS is fault tolerant.
    assert "gcs storage      redis (set on the cluster's head): fault tolerant" in platform.log_path.read_text()
    agent_id = gcs_load.deployed_agent(http, owner)
    spare_id = gcs_load.deployed_agent(http, owner, deploy=False)
    workflow = harness.effect_workflow(http, owner)
    eventually(lambda: cluster.node_of(f"agent:{agent_id}"), timeout_s=LIMIT_S, what="the agent's actor alive")
    names = [*harness.SYSTEM_ACTORS, f"agent:{agent_id}"]
    before = _processes(cluster, names)

    load = gcs_load.Load(platform.base_url, owner, agent_id, workflow, tmp_path, spare_agent_id=spare_id)
    load.start()
    try:
        eventually(lambda: len(_since(load, 0, "create", 201)) >= 20, timeout_s=LIMIT_S, what="the load running")
        killed_at = cluster.process.kill_gcs()
        load.deploy_spare()
        # The API answers throughout: tasks keep being created, and what needs the GCS is refused at once.
        eventually(
            lambda: (
                len(_since(load, killed_at, "create", 201)) >= 20
                and len(_since(load, killed_at, "run", 201)) >= 1
                and all(len(_since(load, killed_at, kind, 503)) >= 2 for kind in NEEDS_GCS)
            ),
            timeout_s=LIMIT_S,
            what="tasks and runs created, and 503s for what needs the GCS, while it is down",
        )
        restarted_at = cluster.process.start_gcs()
        after = _processes(cluster, names)  # the cluster process's first answer: the new GCS serving
        serving_at = time.time()
        # Deployed once the GCS is back: by a call made after the restart, or by one made while it came back
        # (that call waited on the GCS's probe and went through; the load tries no more after a success: 200, or 202
        # while the actor starts).
        eventually(
            lambda: [
                c
                for c in list(load.calls)
                if c.kind == "deploy" and c.status in (200, 202) and c.began + c.seconds >= restarted_at
            ],
            timeout_s=LIMIT_S,
            what="the spare deployed",
        )
        eventually(lambda: len(_since(load, serving_at, "create", 201)) >= 20, timeout_s=LIMIT_S, what="more load")
    finally:
        calls = load.stop()

    outage = gcs_load.outage(calls, killed_at, serving_at)
    assert outage.other_errors == [], outage
    assert outage.unavailable_without_retry_after == 0, outage
    refused = {c.kind for c in calls if killed_at <= c.began < serving_at and c.status == 503}
    assert refused <= set(NEEDS_GCS), refused
    # Nothing waited on the GCS: a refusal costs at most one probe of it (actors/gcs.py, 1 s).
    assert outage.p99_s < 3.0, outage
    # Live actors kept running: the same processes, never restarted.
    assert after == before

    created = {c.created for c in calls if c.kind == "create" and c.created}
    runs = [c.created for c in calls if c.kind == "run" and c.created]

    def every_task_completed() -> bool:
        stored = gcs_load.stored_tasks(http, owner, agent_id)
        return all(stored.get(task) == "completed" for task in created)

    eventually(every_task_completed, timeout_s=LIMIT_S, what=f"all {len(created)} tasks created stored and completed")
    for run_id in runs:
        eventually(
            lambda r=run_id: harness.run(http, owner, r)["status"] == "completed",
            timeout_s=LIMIT_S,
            what=f"run {run_id} completed",
        )
    assert ok(http.get(f"/api/v1/agents/{spare_id}", headers=owner))["status"] == "active"
    assert cluster.node_of(f"agent:{spare_id}") == cluster.work
    gcs_load.OUTAGES.append(outage)
    for agent in (agent_id, spare_id):
        ok(http.post(f"/api/v1/agents/{agent}/undeploy", headers=owner))
