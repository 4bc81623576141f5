"""A fresh cluster taking over a database a lost cluster left full of work (issue 21, item 3): how long until
it holds every run and serves every approval.

The database is seeded through the services layer, as a cluster that was then lost left it:
- `--held` runs the lost cluster was running: claimed under its lease (`executions.lease_owner`), which runs
  out before the new cluster starts. The new cluster's reconciler must find each and resume it; "taken over"
  is each run claimed under a new lease, and the figure the time until all are claimed and until all ended.
- `--waiting` runs paused at an approval node, each with its pending approval (the `--waiting` pending
  approvals). A waiting run and a pending approval are rows: they hold no process in any cluster
  (docs/architecture.md "The actors"), so there is nothing to restart for them. "Taken over" is measured as
  what a user sees: the new API lists every pending approval, and a decision sent through it (which
  activates the approval's actor, `approval:<id>`) applies and resumes its run. The bench decides `--sample`
  of them through the API (latency of each decision, and until its run ended), then the rest at once in the
  database (as the store applies a decision) and times the new cluster resuming and ending all those runs.
Times are from the moment `orchestrator up` is started (Ray, Serve and the platform's actors included), and
also from the moment its API answered.

Run from the repository root, with a Postgres (a database is created for the run and dropped):
`ORCHESTRATOR_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres .venv/bin/python
bench/cluster_swap.py [--held 1000] [--waiting 1000] [--sample 20]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)
from core.settings import load_settings  # noqa: E402
from persistence.db import Database  # noqa: E402
from persistence.models import Approval, Execution  # noqa: E402
from services import approvals, executions, users  # noqa: E402
from services.executions import DatabaseRunStore  # noqa: E402
from services.principal import Role  # noqa: E402
from tests.multinode import local_cluster  # noqa: E402
from tests.platform_fixtures import _postgres_database  # noqa: E402

EMAIL, PASSWORD = "swap-bench@example.com", "correct horse 1"
LOST_CLUSTER = "run-pool:0#lost-cluster"
LIMIT_S = 900.0
PLAIN = {
    "nodes": [{"id": "in", "type": "input"}, {"id": "out", "type": "output"}],
    "edges": [{"source": "in", "target": "out"}],
}
GATED = {
    "nodes": [
        {"id": "in", "type": "input"},
        {"id": "gate", "type": "approval", "config": {"reason": "go on?"}},
        {"id": "out", "type": "output"},
    ],
    "edges": [{"source": "in", "target": "gate"}, {"source": "gate", "target": "out"}],
}
APPROVAL_WAIT = {"kind": "approval", "reason": "go on?", "description": None, "input_schema": None, "priority": "P1"}


def seed(db: Database, store: DatabaseRunStore, held: int, waiting: int) -> tuple[str, list[str], list[str]]:
    """The user, the runs the lost cluster held, and the runs waiting on approvals (through the run store, as
    the lost cluster's run actors wrote them)."""
    policy = users.RegistrationPolicy(allow_registration=True, default_role=Role.agent, password_min_length=8)
    with db.transaction() as session:
        user = users.register_user(
            session,
            email=EMAIL,
            password_hash=users.prepare_password(PASSWORD, policy),
            first_name=None,
            last_name=None,
            policy=policy,
        )
        user_id = user.id

    def start(graph: dict) -> str:
        with db.transaction() as session:
            run = executions.start_graph(
                session,
                graph=graph,
                owner=("user", user_id),
                created_by=user_id,
                input_data={},
                trigger="manual",
                configuration={},
            )
            return run.id

    held_ids = []
    for _ in range(held):
        run_id = start(PLAIN)
        assert store.claim(run_id, f"{LOST_CLUSTER}-{uuid.uuid4().hex[:8]}", None) is not None
        held_ids.append(run_id)
    waiting_ids = []
    for _ in range(waiting):
        run_id = start(GATED)
        token = f"{LOST_CLUSTER}-{uuid.uuid4().hex[:8]}"
        claimed = store.claim(run_id, token, None)
        assert claimed is not None and store.wait(claimed, token, "gate", dict(APPROVAL_WAIT), [])
        waiting_ids.append(run_id)
    return user_id, held_ids, waiting_ids


def count(db: Database, query) -> int:
    with db.session() as session:
        return session.scalar(query) or 0


def until(probe: Callable[[], bool], what: str) -> float:
    """Wall time at which `probe` first held, polled every 0.1 s."""
    deadline = time.monotonic() + LIMIT_S
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {LIMIT_S:.0f}s")
        time.sleep(0.1)
    return time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=1000, help="runs the lost cluster held (leases run out)")
    parser.add_argument("--waiting", type=int, default=1000, help="runs waiting on a pending approval")
    parser.add_argument("--sample", type=int, default=20, help="approvals decided through the new cluster's API")
    args = parser.parse_args()
    base_url = os.environ.get("ORCHESTRATOR_TEST_DATABASE_URL")
    if not base_url:
        raise SystemExit("set ORCHESTRATOR_TEST_DATABASE_URL to a Postgres URL (a database is created and dropped)")
    databases = _postgres_database(base_url)
    database_url = next(databases)
    folder = Path(tempfile.mkdtemp(prefix="cluster-swap-"))
    platform = None
    try:
        settings = load_settings(
            database={"database_url": database_url}, workflows={"run_lease_s": local_cluster.RUN_LEASE_S}
        )
        db = Database(database_url, pool_size=2, max_overflow=0)
        store = DatabaseRunStore(db, settings)
        began = time.monotonic()
        _, held, waiting = seed(db, store, args.held, args.waiting)
        seeded_s = time.monotonic() - began
        print(f"seeded {len(held)} held runs and {len(waiting)} runs waiting on approvals in {seeded_s:.1f} s")
        time.sleep(local_cluster.RUN_LEASE_S + 1)  # the lost cluster's leases run out

        held_set = Execution.id.in_(held)
        claimed_by_new = select(func.count()).where(
            held_set, (Execution.status == "completed") | ~Execution.lease_owner.like(f"{LOST_CLUSTER}%")
        )
        ended = select(func.count()).where(held_set, Execution.status == "completed")
        # Watched from before `up` starts: the reconciler's first pass may resume them before the API answers.
        watched: dict[str, float] = {}

        def watch() -> None:
            watched["claimed"] = until(lambda: count(db, claimed_by_new) == len(held), "every held run claimed")
            watched["ended"] = until(lambda: count(db, ended) == len(held), "every held run ended")

        watcher = threading.Thread(target=watch, daemon=True)
        up_at = time.time()
        watcher.start()
        platform = local_cluster.start(database_url, folder / "new")
        api_at = time.time()
        watcher.join(LIMIT_S)
        all_claimed_at, all_ended_at = watched["claimed"], watched["ended"]

        with httpx.Client(base_url=platform.base_url, timeout=60) as http:
            token = http.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            listed = http.get("/api/v1/approvals/pending", headers=headers, params={"limit": 1}).json()
            listed_at = time.time()
            assert listed["pagination"]["total"] == len(waiting), listed["pagination"]
            with db.session() as session:
                query = select(Approval.execution_id, Approval.id).where(Approval.execution_id.in_(waiting))
                approval_of = {run_id: approval_id for run_id, approval_id in session.execute(query).all()}
            sample = waiting[: args.sample]
            latencies = []
            for run_id in sample:
                started = time.perf_counter()
                response = http.post(f"/api/v1/approvals/{approval_of[run_id]}/approve", headers=headers, json={})
                assert response.status_code == 200, response.text
                latencies.append((time.perf_counter() - started) * 1000)
        sample_set = Execution.id.in_(sample)
        until(
            lambda: count(db, select(func.count()).where(sample_set, Execution.status == "completed")) == len(sample),
            "the sample's runs ended",
        )

        rest = waiting[args.sample :]
        decided_at = time.time()
        for index in range(0, len(rest), 100):
            with db.transaction() as session:
                for run_id in rest[index : index + 100]:
                    approvals.decide(session, approval_of[run_id], "bench", True, None, settings)
        decided_s = time.time() - decided_at
        rest_set = Execution.id.in_(rest)
        rest_ended_at = until(
            lambda: count(db, select(func.count()).where(rest_set, Execution.status == "completed")) == len(rest),
            "the decided runs ended",
        )

        def since(at: float) -> str:
            return f"{at - up_at:6.1f} s after `up` began, {at - api_at:6.1f} s after its API answered"

        print(f"\nthe new cluster: `orchestrator up` to its API answering  {api_at - up_at:6.1f} s")
        print(f"{len(held)} runs the lost cluster held (leases run out):")
        print(f"  every one claimed by the new cluster      {since(all_claimed_at)}")
        print(f"  every one ended (completed)                {since(all_ended_at)}")
        print(f"{len(waiting)} runs waiting on {len(waiting)} pending approvals (rows; no process in either cluster):")
        print(f"  all listed pending by the new API          {since(listed_at)}")
        print(
            f"  {len(sample)} decided through the API (each activates its approval actor): "
            f"p50 {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
        )
        print(
            f"  the other {len(rest)} decided in the database in {decided_s:.1f} s; all their runs resumed and "
            f"ended {rest_ended_at - decided_at:.1f} s later"
        )
    finally:
        if platform is not None:
            local_cluster.kill(platform)
        databases.close()


if __name__ == "__main__":
    main()
