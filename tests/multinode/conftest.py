"""The multi-node cluster and the platform on it, once for the module (tests/multinode/harness.py); the time
from the node's loss to each run's interrupted step running again, printed at the end of the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import POSTGRES_ENV
from tests.multinode import gcs_load, harness
from tests.multinode.harness import RESUMED_AFTER, Cluster, ClusterProcess
from tests.platform_fixtures import Platform, _postgres_database


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("multinode")
    process = ClusterProcess(folder / "cluster.log")
    try:
        api = process.add_node(num_cpus=harness.API_CPUS)
        yield Cluster(process, api, "")
    finally:
        process.close()


@pytest.fixture(scope="module")
def platform(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    base_url = os.environ[POSTGRES_ENV]
    databases = _postgres_database(base_url)
    database_url = next(databases)
    try:
        platform = harness.start_platform(cluster.process, database_url, tmp_path_factory.mktemp("platform"))
        # The work joins once the API's replica holds the `api` node, as an autoscaler adds a node for waiting work.
        cluster.work = cluster.process.add_node(num_cpus=harness.WORK_NODE_CPUS)
        try:
            yield platform
        finally:
            platform.stop()
    finally:
        databases.close()


@pytest.fixture(scope="module")
def http(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def owner(http: httpx.Client) -> dict[str, str]:
    return harness.register(http)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RESUMED_AFTER:
        terminalreporter.section("multinode: a work node lost -> its runs' interrupted steps running elsewhere")
        for name, seconds in sorted(RESUMED_AFTER.items()):
            terminalreporter.write_line(f"{name:<8} {seconds:5.1f} s")
    for outage in gcs_load.OUTAGES:
        terminalreporter.section("multinode: the GCS killed under load, restarted from Redis")
        terminalreporter.write_line(
            f"{outage.calls} calls while it was down: error rate {outage.error_rate:.1%} ({outage.unavailable} x 503, "
            f"all with Retry-After: {outage.unavailable_without_retry_after == 0}), p50 {outage.p50_s * 1000:.0f} ms, "
            f"p99 {outage.p99_s * 1000:.0f} ms"
        )
