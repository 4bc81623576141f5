"""A heavy run makes Ray's autoscaler add a node (issue 6): the platform joins a local autoscaling cluster
(Ray's fake multi-node provider: a 2-CPU head and a 4-CPU worker type, as `ray.cluster_utils.
AutoscalingCluster` builds it), a run asking for 4 CPUs waits `pending`, a node is added, and the run
completes on it; a run no node type could hold is refused with INSUFFICIENT_RESOURCES.

The cluster is started with `ray start` and stopped with `ray stop --force`, which stops every Ray
instance on the machine: this module runs before the e2e platform starts (pytest takes tests/autoscaling
first), and it should not be run beside another Ray instance of yours.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from ray._private.services import get_node_ip_address

from tests.conftest import free_port
from tests.e2e.conftest import REPO_ROOT, Platform

RAY = str(Path(sys.executable).parent / "ray")
FIX = "tests.fixtures.workflow_nodes"


def cluster_config(head_cpus: int, worker_types: dict, gcs_address: str) -> dict:
    """The fake multi-node provider's cluster config, as `ray.cluster_utils.AutoscalingCluster` writes it
    (its template, `fake_multi_node/example.yaml`, is not in Ray's wheel)."""
    return {
        "cluster_name": "fake_multinode",
        "max_workers": 8,
        "head_node_type": "ray.head.default",
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0},
            **worker_types,
        },
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


@pytest.fixture(scope="module")
def autoscaling_platform(tmp_path_factory: pytest.TempPathFactory):
    ray_port = free_port()  # not 6379, the fake provider's default: Redis has it
    config = cluster_config(
        head_cpus=2,
        worker_types={
            "cpu4": {"resources": {"CPU": 4}, "node_config": {}, "min_workers": 0, "max_workers": 1},
        },
        gcs_address=f"{get_node_ip_address()}:{ray_port}",
    )
    folder = tmp_path_factory.mktemp("autoscaling")
    config_path = folder / "cluster.json"
    config_path.write_text(json.dumps(config))
    # `ray start` clusters of Ray 2.60 use token authentication: whoever joins says so.
    cluster_env = {
        **os.environ,
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_FAKE_CLUSTER": "1",
        "PYTHONPATH": str(REPO_ROOT),
        "RAY_AUTH_MODE": "token",
    }
    subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--port={ray_port}",
            f"--autoscaling-config={config_path}",
            "--num-cpus=2",
            f"--dashboard-port={free_port()}",
            "--disable-usage-stats",
        ],
        env=cluster_env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    address = f"127.0.0.1:{ray_port}"
    port = free_port()
    env = {
        **cluster_env,
        "ORCHESTRATOR_DATA_DIR": str(folder / "platform"),
        "ORCHESTRATOR_PORT": str(port),
        "ORCHESTRATOR_DATABASE_URL": "",
        "ORCHESTRATOR_REDIS_URL": "",
        "ORCHESTRATOR_ENVIRONMENT": "test",
        "ORCHESTRATOR_AGENT_CODE_MODULES": "tests.fixtures",
        "ORCHESTRATOR_RECONCILE_INTERVAL_S": "2",
        "ORCHESTRATOR_RAY_ADDRESS": address,
        "RAY_ADDRESS": address,
        # Ray's own autoscaler does not publish its node types to the cluster: the operator declares them.
        "ORCHESTRATOR_RAY_NODE_TYPES": json.dumps([{"cpu": 4}]),
    }
    (folder / "platform").mkdir()
    platform = Platform(f"http://127.0.0.1:{port}", folder / "platform", folder / "platform" / "up.log", env)
    try:
        platform.start()
        yield platform, address
        platform.stop()
    finally:
        subprocess.run([RAY, "stop", "--force"], env=cluster_env, check=False, capture_output=True, timeout=120)


def _alive_nodes(address: str) -> int:
    # The driver also prints the autoscaler's events ("(autoscaler +0s) Resized to 6 CPUs.") to stdout, at
    # any moment: the count is the line that says so.
    script = (
        "import ray; ray.init(address='auto', logging_level='ERROR'); "
        "print('alive nodes:', sum(n['Alive'] for n in ray.nodes()), flush=True)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    [count] = [line.split(":", 1)[1] for line in out.stdout.splitlines() if line.startswith("alive nodes:")]
    return int(count)


def test_a_run_asking_for_more_than_the_cluster_has_waits_for_a_new_node(autoscaling_platform) -> None:
    platform, address = autoscaling_platform
    assert _alive_nodes(address) == 1
    with httpx.Client(base_url=platform.base_url, timeout=60) as http:
        email = f"scale-{secrets.token_hex(4)}@example.com"
        http.post("/api/v1/auth/register", json={"email": email, "password": "correct horse 1"})
        token = http.post("/api/v1/auth/login", json={"email": email, "password": "correct horse 1"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        agent = http.post("/api/v1/agents", headers=headers, json={"name": "heavy"}).json()
        add = {"id": "add", "type": "python", "config": {"function": f"{FIX}:add_one"}}
        nodes = [{"id": "in", "type": "input"}, add, {"id": "out", "type": "output"}]
        edges = [{"source": "in", "target": "add"}, {"source": "add", "target": "out"}]
        graph = {"name": "heavy", "workflow_data": {"nodes": nodes, "edges": edges}}
        workflow = http.post(f"/api/v1/agents/{agent['id']}/workflows", headers=headers, json=graph).json()
        url = f"/api/v1/workflows/{workflow['id']}/execute"

        never = http.post(url, headers=headers, json={"execution_options": {"resources": {"cpu": 64}}})
        assert never.status_code == 422 and never.json()["error"]["code"] == "INSUFFICIENT_RESOURCES", never.text

        started = http.post(
            url, headers=headers, json={"input_data": {"value": 1}, "execution_options": {"resources": {"cpu": 4}}}
        )
        assert started.status_code == 201, started.text
        run_id = started.json()["execution_id"]
        time.sleep(2)
        assert http.get(f"/api/v1/executions/{run_id}", headers=headers).json()["status"] == "pending"
        deadline, run = time.monotonic() + 240, {}
        while time.monotonic() < deadline:
            run = http.get(f"/api/v1/executions/{run_id}", headers=headers).json()
            if run["status"] not in ("pending", "running"):
                break
            time.sleep(1)
    assert run["status"] == "completed" and run["output"]["value"] == 2, run
    assert run["actor_name"] == f"run:{run_id}"  # its own actor, with the 4 CPUs it asked for
    assert _alive_nodes(address) == 2  # the autoscaler added the 4-CPU node for it
