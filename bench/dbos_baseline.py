"""The same workflow workloads as bench/workflows.py, through DBOS (a durable-execution library that runs
workflows in the calling process), on the same database: the peer the platform's figures are compared to.

Run in a process of its own (DBOS is a process-wide singleton) by `bench/workflows.py --baseline dbos`; it
prints one JSON object. A Postgres URL gets a schema of its own for DBOS's tables, dropped at the end; a
SQLite URL is a scratch file. Needs the `dbos` package (`pip install dbos`; not a dependency of the
platform).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tasks import _percentile  # this script's folder is first on sys.path


def measure(database_url: str, runs: int, concurrency: int, steps: int) -> dict[str, float]:
    from dbos import DBOS

    schema = f"dbos_bench_{uuid.uuid4().hex[:8]}"
    postgres = database_url.startswith("postgresql")
    config = {
        "name": "orchestrator-bench",
        "system_database_url": database_url,
        "dbos_system_schema": schema,
        "sys_db_pool_size": max(20, 2 * concurrency),
        "log_level": "WARNING",
    }
    DBOS(config=config)

    @DBOS.step()
    def add_one(value: int) -> int:
        return value + 1

    @DBOS.workflow()
    def one_step(value: int) -> int:
        return add_one(value)

    @DBOS.workflow()
    def many_steps(value: int, count: int) -> int:
        for _ in range(count):
            value = add_one(value)
        return value

    DBOS.launch()
    try:
        for _ in range(10):  # warm-up
            assert one_step(0) == 1
        per_step = []
        for _ in range(3):
            began = time.perf_counter()
            assert many_steps(0, steps) == steps
            per_step.append((time.perf_counter() - began) / steps * 1000)

        # Open loop, as the platform's clients: every run submitted, then all awaited.
        began = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            handles = list(pool.map(lambda _: DBOS.start_workflow(one_step, 0), range(runs)))
        assert all(handle.get_result() == 1 for handle in handles)
        open_span = time.perf_counter() - began

        # Closed loop: each client starts a run and waits for its result, `runs` in all.
        latencies: list[float] = []
        lock, left = threading.Lock(), [runs]

        def client() -> None:
            while True:
                with lock:
                    if left[0] == 0:
                        return
                    left[0] -= 1
                started = time.perf_counter()
                assert DBOS.start_workflow(one_step, 0).get_result() == 1
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        closed_span = time.perf_counter() - began
    finally:
        DBOS.destroy(destroy_registry=True)
        if postgres:
            from sqlalchemy import create_engine, text

            engine = create_engine(database_url)
            with engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()
    return {
        "per_step_ms": min(per_step),
        "open_runs_per_s": runs / open_span,
        "closed_runs_per_s": runs / closed_span,
        "closed_p50_ms": statistics.median(latencies),
        "closed_p99_ms": _percentile(latencies, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="default: a scratch SQLite file")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'dbos.sqlite'}"
        print(json.dumps(measure(url, args.runs, args.concurrency, args.steps)))


if __name__ == "__main__":
    main()
