"""Every Ray call about agents' actors: the implementation of `services.ports.AgentActors` on Ray
(`AgentActorsOnRay`), over thin functions that the platform's other actors share.

Actors are named `agent:<id>` in the platform's namespace, detached (they outlive the request that
created them), restarted by Ray when their process dies (`max_restarts=-1`), and created with
`get_if_exists` so that activation by name is one atomic get-or-create in Ray's control store.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any

import ray
import ray.util.state
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from actors import gcs
from actors.capacity import cluster_shape
from actors.names import STORE_NAME, agent_actor_name
from actors.placement import system_actor_options
from core.clock import isoformat_z, utcnow
from core.errors import InsufficientResources, ServiceUnavailable
from core.settings import Settings
from schedulers import admission
from services.ports import ActorReady

log = logging.getLogger("orchestrator.agents")


# Ray's actor states, in the words of an agent's container (`GET /agents/{id}/container`, docs/api.md "Agents").
CONTAINER_STATUS = {
    "ALIVE": "running",
    "RESTARTING": "restarting",
    "PENDING_CREATION": "pending",
    "DEPENDENCIES_UNREADY": "pending",
    "DEAD": "dead",
}
_LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) \[([^\]]*)\] (.*)$"
)
_LOG_FETCH_LINES = 10_000


@cache
def _agent_class() -> Any:
    from actors.agent import AgentActor

    return ray.remote(max_restarts=-1, max_task_retries=0)(AgentActor)


@cache
def _store_class() -> Any:
    from actors.store import Store

    return ray.remote(max_restarts=-1, max_task_retries=-1)(Store)


_stores: dict[str, Any] = {}


def ensure_store(settings: Settings) -> Any:
    """The store actor, started on first use (threaded: one short transaction per call). Looked up once per
    process: activation and task dispatch call this on their hot path, and Ray restarts the store under the
    same handle if it dies."""
    handle = _stores.get(settings.ray.ray_namespace)
    if handle is None:
        handle = _stores[settings.ray.ray_namespace] = _start_store(settings)
    return handle


def _start_store(settings: Settings) -> Any:
    return (
        _store_class()
        .options(
            name=STORE_NAME,
            namespace=settings.ray.ray_namespace,
            lifetime="detached",
            get_if_exists=True,
            max_concurrency=settings.agents.actor_database_pool_size * 2,
            **system_actor_options(),  # on the head, with the other singletons
        )
        .remote(settings)
    )


def admit(request: dict[str, float], settings: Settings) -> admission.Placement:
    """Where a request for resources stands: placeable now, later (busy, or after the autoscaler adds a
    node), or never, which raises INSUFFICIENT_RESOURCES."""
    _require_ray()
    gcs.require("Placing an agent (the cluster's nodes and resources)")
    shape = cluster_shape(settings.ray.ray_node_types)
    placement = admission.place(request, shape)
    if placement is admission.Placement.never:
        raise InsufficientResources(
            f"No node can hold {admission.describe(request)} and the cluster cannot scale to it "
            f"(largest node: {admission.describe(admission.largest_node(shape.totals))})"
        )
    return placement


def activate(settings: Settings, agent_id: str, options: dict[str, Any]) -> Any:
    """The agent's actor: the live one, or a new one started now (deploy, or re-activation after
    passivation). Its constructor loads the agent from the database through the store."""
    _require_ray()
    ensure_store(settings)
    agents = settings.agents
    return (
        _agent_class()
        .options(
            name=agent_actor_name(agent_id),
            namespace=settings.ray.ray_namespace,
            lifetime="detached",
            get_if_exists=True,
            **options,
        )
        .remote(
            agent_id,
            settings.ray.ray_namespace,
            agents.agent_idle_timeout_s,
            agents.agent_heartbeat_timeout_s,
            options["max_concurrency"] - admission.AGENT_CONTROL_CALLS,
        )
    )


def dispatch(settings: Settings, agent_id: str, options: dict[str, Any], task_id: str) -> None:
    """Send an assigned task to the agent's actor without waiting (re-activating it if needed). A send that
    the actor refused because it was passivating, or that found it gone, is sent again shortly (by then the
    name re-activates a new process); the database still says what is owed, and the reconciler's pass sends
    it again if all of that fails. Sending twice is harmless: an actor starts only a task still assigned to
    its agent."""
    ref = activate(settings, agent_id, options).run_task.remote(task_id)
    _redispatcher().watch(ref, (settings, agent_id, options, task_id), attempt=1)


class _Redispatcher:
    """One thread per process: waits on the dispatches sent and re-sends those that failed before running."""

    ATTEMPTS = 20
    BACKOFF_S = 0.1

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Any, tuple[tuple[Settings, str, dict[str, Any], str], int]] = {}
        self._due: list[tuple[float, tuple[Settings, str, dict[str, Any], str], int]] = []
        threading.Thread(target=self._loop, name="redispatch", daemon=True).start()

    def watch(self, ref: Any, call: tuple[Settings, str, dict[str, Any], str], attempt: int) -> None:
        with self._lock:
            self._pending[ref] = (call, attempt)

    def _loop(self) -> None:
        while True:
            with self._lock:
                refs = list(self._pending)
            if not refs:
                time.sleep(self.BACKOFF_S)
            else:
                done, _ = ray.wait(refs, num_returns=len(refs), timeout=self.BACKOFF_S, fetch_local=False)
                for ref in done:
                    self._settle(ref)
            self._send_due()

    def _settle(self, ref: Any) -> None:
        with self._lock:
            call, attempt = self._pending.pop(ref)
        try:
            ray.get(ref)
        except (RayActorError, RayTaskError) as exc:  # passivating, or the process gone: send it again
            if attempt < self.ATTEMPTS:
                with self._lock:
                    self._due.append((time.monotonic() + self.BACKOFF_S * min(attempt, 5), call, attempt + 1))
            else:
                log.warning("task %s: not delivered to agent %s (%s); the reconciler sends it", call[3], call[1], exc)
        except Exception:  # noqa: S110 (anything else is the task's own outcome, recorded by the actor)
            pass

    def _send_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [entry for entry in self._due if entry[0] <= now]
            self._due = [entry for entry in self._due if entry[0] > now]
        for _, (settings, agent_id, options, task_id), attempt in due:
            try:
                ref = activate(settings, agent_id, options).run_task.remote(task_id)
            except Exception as exc:
                log.warning("task %s: re-sending to agent %s failed: %s", task_id, agent_id, exc)
                continue
            self.watch(ref, (settings, agent_id, options, task_id), attempt)


@cache
def _redispatcher() -> _Redispatcher:
    return _Redispatcher()


def find(settings: Settings, agent_id: str) -> Any | None:
    if not ray.is_initialized():
        return None
    try:
        return ray.get_actor(agent_actor_name(agent_id), namespace=settings.ray.ray_namespace)
    except ValueError:
        return None


def live_agent_ids(settings: Settings) -> set[str]:
    """Ids of agents that have a named actor now (alive, starting or restarting)."""
    gcs.require("Listing the agents' actors")
    names = ray.util.list_named_actors(all_namespaces=True)
    prefix = agent_actor_name("")
    return {
        entry["name"].removeprefix(prefix)
        for entry in names
        if entry["namespace"] == settings.ray.ray_namespace and entry["name"].startswith(prefix)
    }


def wait_ready(settings: Settings, agent_id: str, *, timeout_s: float, handle: Any = None) -> ActorReady:
    """`handle`: the one `activate` returned, whose constructor's error Ray still holds after the actor died
    (a lookup by name no longer finds a dead actor)."""
    handle = handle or find(settings, agent_id)
    if handle is None:
        return ActorReady(placed=False, error="the actor disappeared while starting")
    try:
        info = ray.get(handle.ready.remote(), timeout=timeout_s)
    except GetTimeoutError:
        return ActorReady(placed=False)
    except RayActorError as exc:
        return ActorReady(placed=False, error=creation_error(exc))
    return ActorReady(placed=True, node_id=info["node_id"], pid=info["pid"])


def creation_error(exc: BaseException) -> str:
    """The exception an actor's constructor raised, from Ray's long ActorDiedError text."""
    text = str(exc)
    found = re.findall(r"^\s*((?:[\w.]+)(?:Error|Exception|NotDeployed|Unavailable)(?::[^\n]*)?)$", text, re.M)
    return found[-1].strip() if found else text.splitlines()[0][:500]


def stop(settings: Settings, agent_id: str) -> bool:
    """Kill the agent's actor for good; False if it has none, or if Ray's control store does not answer: the
    database already says the agent is not deployed, and the reconciler stops such an actor on a later pass."""
    if not gcs.reachable():
        log.warning("agent %s: actor not stopped now (Ray's control store is not answering)", agent_id)
        return False
    handle = find(settings, agent_id)
    if handle is None:
        return False
    ray.kill(handle, no_restart=True)
    return True


def restart(settings: Settings, agent_id: str, options: dict[str, Any]) -> str:
    """Kill the actor's process and let Ray start a new one (same actor id); activate it if passivated."""
    gcs.require("Restarting an agent's actor")
    handle = find(settings, agent_id)
    if handle is None:
        return activate(settings, agent_id, options)._actor_id.hex()
    ray.kill(handle, no_restart=False)
    return handle._actor_id.hex()


def heartbeat(settings: Settings, agent_id: str, at: str) -> bool:
    """Tell the actor its worker beat, only if it runs now: it does not wake a passivated agent."""
    handle = find(settings, agent_id)
    if handle is None:
        return False
    handle.heartbeat.remote(at)
    return True


def inspect(settings: Settings, agent_id: str, *, ping_timeout_s: float) -> dict[str, Any]:
    """Ray's view of the actor (state, node, pid, restarts) and the actor's own health ping."""
    gcs.require("Ray's view of an agent's actor")
    handle = find(settings, agent_id)
    if handle is None:
        return {"status": "missing", "health_status": "unhealthy", "last_health_check": _now()}
    actor_id = handle._actor_id.hex()
    report: dict[str, Any] = {"container_id": actor_id, "last_health_check": _now()}
    try:
        state = ray.util.state.get_actor(actor_id, timeout=ping_timeout_s)
    except Exception as exc:  # the state API needs the dashboard; say so rather than fail the request
        log.warning("state API unavailable: %s", exc)
        state = None
    if state is not None:
        report.update(
            ray_state=state.state,
            status=CONTAINER_STATUS.get(state.state, state.state.lower()),
            node_id=state.node_id,
            pid=state.pid,
            restarts=state.num_restarts,
            required_resources=state.required_resources,
        )
    try:
        ping = ray.get(handle.status.remote(), timeout=ping_timeout_s)
    except (GetTimeoutError, RayActorError) as exc:
        report.update(health_status="unhealthy", health_message=f"{type(exc).__name__}: no answer")
        report.setdefault("status", "unknown")
        return report
    report.update(
        status=report.get("status", "running"),
        health_status="healthy",
        node_id=ping["node_id"],
        pid=ping["pid"],
        started_at=ping["started_at"],
        resource_usage={"cpu_percent": ping["cpu_percent"], "memory_usage": ping["memory_usage"]},
        agent={
            key: ping[key]
            for key in (
                "framework",
                "mode",
                "loaded_version",
                "loaded_name",
                "in_flight",
                "idle_seconds",
                "last_heartbeat_at",
                "online",
            )
        },
    )
    return report


def logs(container_id: str, *, since: datetime | None, until: datetime | None, tail: int) -> list[dict[str, Any]]:
    """The actor's own log lines (its worker's stderr, through Ray's state API), oldest first."""
    gcs.require("An actor's logs")
    try:
        lines = list(ray.util.state.get_log(actor_id=container_id, suffix="err", tail=_LOG_FETCH_LINES, timeout=10))
    except Exception as exc:
        raise ServiceUnavailable(f"The actor's logs are unavailable from Ray's state API: {exc}") from exc
    entries = parse_log_lines("".join(lines).splitlines())
    if since is not None:
        entries = [entry for entry in entries if entry["timestamp"] and entry["timestamp"] >= since]
    if until is not None:
        entries = [entry for entry in entries if entry["timestamp"] and entry["timestamp"] <= until]
    return entries[-tail:] if tail else []


def parse_log_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Our log format back into entries; other lines (prints, tracebacks) continue the previous entry.
    Ray's own header lines (`:job_id:…`, `:actor_name:…`) are dropped."""
    entries: list[dict[str, Any]] = []
    for line in lines:
        if (
            not line.strip()
            or line.startswith(":job_id:")
            or line.startswith(":actor_name:")
            or line.startswith(":task_name:")
        ):
            continue
        match = _LOG_LINE.match(line)
        if match:
            stamp, level, logger, correlation_id, message = match.groups()
            entries.append(
                {
                    "timestamp": datetime.fromisoformat(stamp).replace(tzinfo=UTC),
                    "level": level,
                    "message": message,
                    "source": logger,
                    "correlation_id": correlation_id if correlation_id != "-" else None,
                }
            )
        elif entries:
            entries[-1]["message"] += "\n" + line
        else:
            entries.append({"timestamp": None, "level": "INFO", "message": line, "source": "stderr"})
    return entries


def _now() -> str:
    return isoformat_z(utcnow())


def _require_ray() -> None:
    # Never let a Ray call start a private local Ray inside an API process that is not on a cluster.
    if not ray.is_initialized():
        raise ServiceUnavailable("Agents are deployed by the platform on Ray; this API process is not on a cluster")


class AgentActorsOnRay:
    """`services.ports.AgentActors` on Ray, for one namespace's settings."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._starting: dict[str, Any] = {}  # handles activated and not yet waited for

    @property
    def on_cluster(self) -> bool:
        return ray.is_initialized()

    def actor_name(self, agent_id: str) -> str:
        return agent_actor_name(agent_id)

    def admit(self, request: dict[str, float]) -> admission.Placement:
        return admit(request, self._settings)

    def activate(self, agent_id: str, options: dict[str, Any]) -> None:
        self._starting[agent_id] = activate(self._settings, agent_id, options)

    def wait_ready(self, agent_id: str, *, timeout_s: float) -> ActorReady:
        handle = self._starting.pop(agent_id, None)
        return wait_ready(self._settings, agent_id, timeout_s=timeout_s, handle=handle)

    def dispatch(self, agent_id: str, options: dict[str, Any], task_id: str) -> None:
        dispatch(self._settings, agent_id, options, task_id)

    def heartbeat(self, agent_id: str, at: str) -> bool:
        return heartbeat(self._settings, agent_id, at)

    def stop(self, agent_id: str) -> bool:
        return stop(self._settings, agent_id)

    def restart(self, agent_id: str, options: dict[str, Any]) -> str:
        return restart(self._settings, agent_id, options)

    def live_agent_ids(self) -> set[str]:
        return live_agent_ids(self._settings)

    def inspect(self, agent_id: str, *, ping_timeout_s: float) -> dict[str, Any]:
        return inspect(self._settings, agent_id, ping_timeout_s=ping_timeout_s)

    def logs(
        self, container_id: str, *, since: datetime | None, until: datetime | None, tail: int
    ) -> list[dict[str, Any]]:
        return logs(container_id, since=since, until=until, tail=tail)
