"""What the cluster looks like and what the platform's processes log, read from Ray (`GET /system/status`,
`GET /system/logs`). Every call blocks: the routes run these off the event loop, with a timeout.

Actors are told apart by their names (actors/names.py): `agent:<id>`, `run:<id>`, `run-pool:<n>`,
`approval:<id>` and the singletons `router`, `reconciler`, `store`, `runs` (the run pool), `event-hub` in the
platform's namespace; Serve's controller, proxies and the API's replicas in Ray's `serve` namespace.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import ray

from actors import agent_handles, gcs
from actors.names import RUN_POOL_NAME
from actors.router_client import ask
from core.settings import Settings

log = logging.getLogger("orchestrator.system")

SERVE_NAMESPACE = "serve"
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
LEVEL_ALIASES = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING", "error": "ERROR"}
# Actors whose logs one request reads at most (singletons and API replicas first); the rest are counted.
MAX_LOG_SOURCES = 64
LOG_READERS = 8
# Newest parsed entries kept per actor (agent_handles.logs reads the last 10,000 lines of each).
LINES_PER_ACTOR = 10_000
STATE_API_TIMEOUT_S = 5
_PREFIXED_KINDS = {"agent:": "agent", "run:": "run", "run-pool:": "run-pool", "approval:": "approval"}
_FIRST_READ = ("api", "router", "reconciler", "store", "event-hub", "run-pool")


def actor_kind(name: str | None, namespace: str | None, platform_namespace: str) -> str | None:
    """The service an actor belongs to, from its name; None for actors that are not the platform's."""
    if not name:
        return None
    if namespace == SERVE_NAMESPACE:
        if name.startswith("SERVE_REPLICA::"):
            return "api"
        if name.startswith("SERVE_CONTROLLER"):
            return "serve-controller"
        if name.startswith("SERVE_PROXY"):
            return "serve-proxy"
        return None
    if namespace != platform_namespace:
        return None
    for prefix, kind in _PREFIXED_KINDS.items():
        if name.startswith(prefix):
            return kind
    return "run-pool" if name == "runs" else name


def level_threshold(level: str | None) -> int:
    """`error`, `warn`/`warning`, `info`, `debug` (any case): that level and above."""
    if not level:
        return LEVELS["DEBUG"]
    name = LEVEL_ALIASES.get(level.lower())
    if name is None:
        raise ValueError(f"unknown level '{level}' (error, warn, info, debug)")
    return LEVELS[name]


def select_entries(
    entries: list[dict[str, Any]], *, level: str | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Entries at `level` and above, at or after `since`, newest first, at most `limit`. Lines that carry no
    timestamp (Ray's own output, stray prints) cannot be placed in time and are left out."""
    threshold = level_threshold(level)
    kept = [
        entry
        for entry in entries
        if entry.get("timestamp") is not None
        and LEVELS.get(entry["level"], LEVELS["INFO"]) >= threshold
        and (since is None or entry["timestamp"] >= since)
    ]
    kept.sort(key=lambda entry: entry["timestamp"], reverse=True)
    return kept[:limit]


# --- Ray ----------------------------------------------------------------------------------------------


def platform_actors(settings: Settings) -> tuple[list[dict[str, Any]], str | None]:
    """The platform's actors and Serve's (name, kind, state, node, pid, actor id), and a note when Ray's state
    API did not answer (then only names of live actors are known, from Ray's control store)."""
    namespace = settings.ray.ray_namespace
    try:
        import ray.util.state

        states = ray.util.state.list_actors(limit=10_000, timeout=STATE_API_TIMEOUT_S, raise_on_missing_output=False)
    except Exception as exc:  # the state API needs the dashboard
        named = ray.util.list_named_actors(all_namespaces=True)
        actors = [
            {
                "name": entry["name"],
                "namespace": entry["namespace"],
                "state": "UNKNOWN",
                "actor_id": None,
                "kind": actor_kind(entry["name"], entry["namespace"], namespace),
            }
            for entry in named
        ]
        return [actor for actor in actors if actor["kind"]], f"Ray's state API is unavailable: {exc}"
    actors = []
    for state in states:
        kind = actor_kind(state.name, state.ray_namespace, namespace)
        if kind is not None:
            actors.append(
                {
                    "name": state.name,
                    "namespace": state.ray_namespace,
                    "kind": kind,
                    "state": state.state,
                    "actor_id": state.actor_id,
                    "node_id": state.node_id,
                    "pid": state.pid or None,
                    "class_name": state.class_name,
                }
            )
    return actors, None


def ray_status(settings: Settings) -> dict[str, Any]:
    """Nodes with their resources, the platform's actors by kind and state, and Serve's applications."""
    if not ray.is_initialized():
        return {"connected": False}
    gcs.require("The cluster's status")
    available_by_node = _available_per_node()
    nodes = []
    for node in ray.nodes():
        total = node.get("Resources") or {}
        nodes.append(
            {
                "node_id": node["NodeID"],
                "alive": bool(node.get("Alive")),
                "is_head": "node:__internal_head__" in total,
                "address": node.get("NodeManagerAddress"),
                "hostname": node.get("NodeManagerHostname"),
                "metrics_export_port": node.get("MetricsExportPort"),
                "resources_total": _resources(total),
                "resources_available": _resources(available_by_node.get(node["NodeID"], {}))
                if node.get("Alive")
                else {},
            }
        )
    actors, note = platform_actors(settings)
    by_kind: dict[str, Counter[str]] = {}
    for actor in actors:
        by_kind.setdefault(actor["kind"], Counter())[actor["state"]] += 1
    singletons = {
        actor["name"]: {key: actor.get(key) for key in ("state", "node_id", "pid")}
        for actor in actors
        if actor["kind"] in ("router", "reconciler", "store", "event-hub") or actor["name"] == "runs"
    }
    status: dict[str, Any] = {
        "connected": True,
        "version": ray.__version__,
        "nodes": nodes,
        "nodes_alive": sum(node["alive"] for node in nodes),
        "nodes_dead": sum(not node["alive"] for node in nodes),
        "resources_total": _resources(ray.cluster_resources()),
        "resources_available": _resources(ray.available_resources()),
        "actors": {
            "by_kind": {kind: dict(states) for kind, states in sorted(by_kind.items())},
            "singletons": singletons,
        },
        "serve": _serve_status(),
        # The warm pool's shape now (size, floor, ceiling, runs per actor), its busy slots and its queue.
        "run_pool": ask(settings, RUN_POOL_NAME, "stats", timeout_s=STATE_API_TIMEOUT_S),
    }
    if note:
        status["actors"]["note"] = note
    return status


def read_logs(
    settings: Settings, *, service: str | None, since: datetime | None, level: str | None, limit: int
) -> dict[str, Any]:
    """The platform's log lines from its actors' and replicas' stderr (Ray's state API), filtered."""
    level_threshold(level)  # refuse an unknown level before reading anything
    if not ray.is_initialized():
        return {"logs": [], "sources": [], "note": "not connected to Ray: the platform's logs are read from its actors"}
    actors, note = platform_actors(settings)
    readable = [
        actor
        for actor in actors
        if actor["actor_id"] and actor["state"] == "ALIVE" and (service is None or actor["kind"] == service)
    ]
    readable.sort(
        key=lambda actor: (
            _FIRST_READ.index(actor["kind"]) if actor["kind"] in _FIRST_READ else len(_FIRST_READ),
            actor["name"],
        )
    )
    chosen, skipped = readable[:MAX_LOG_SOURCES], len(readable) - MAX_LOG_SOURCES

    def read(actor: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]] | str]:
        try:
            return actor, agent_handles.logs(actor["actor_id"], since=since, until=None, tail=LINES_PER_ACTOR)
        except Exception as exc:
            return actor, str(exc)

    entries: list[dict[str, Any]] = []
    sources, unavailable = [], []
    with ThreadPoolExecutor(max_workers=LOG_READERS, thread_name_prefix="system-logs") as readers:
        for actor, found in readers.map(read, chosen):
            if isinstance(found, str):
                unavailable.append({"actor": actor["name"], "error": found})
                continue
            sources.append({"actor": actor["name"], "service": actor["kind"], "lines": len(found)})
            entries.extend(
                {
                    "timestamp": entry["timestamp"],
                    "level": entry["level"],
                    "service": actor["kind"],
                    "actor": actor["name"],
                    "logger": entry["source"],
                    "correlation_id": entry.get("correlation_id"),
                    "message": entry["message"],
                }
                for entry in found
            )
    result: dict[str, Any] = {
        "logs": select_entries(entries, level=level, since=since, limit=limit),
        "sources": sources,
    }
    if unavailable:
        result["unavailable"] = unavailable
    if skipped > 0:
        result["note"] = f"{skipped} more actor(s) not read (at most {MAX_LOG_SOURCES} per request): filter by service"
    if note:
        result["note"] = f"{result.get('note', '')} {note}".strip()
    return result


def _available_per_node() -> dict[str, dict[str, float]]:
    try:
        from ray._private.state import available_resources_per_node

        return available_resources_per_node()
    except Exception as exc:  # a developer API: without it, nodes show their totals only
        log.debug("per-node available resources unavailable: %s", exc)
        return {}


def _resources(resources: dict[str, float]) -> dict[str, float]:
    """CPU, GPU, memory and object store (bytes), and custom resources; not Ray's per-node markers."""
    return {name: round(value, 3) for name, value in sorted(resources.items()) if not name.startswith("node:")}


def _serve_status() -> dict[str, Any]:
    from ray import serve

    try:
        status = serve.status()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    applications = {}
    for name, app in status.applications.items():
        applications[name] = {
            "status": str(getattr(app.status, "value", app.status)),
            "message": app.message,
            "deployed_at": app.last_deployed_time_s,
            "deployments": {
                deployment_name: {
                    "status": str(getattr(deployment.status, "value", deployment.status)),
                    "replicas": {
                        str(getattr(state, "value", state)): count for state, count in deployment.replica_states.items()
                    },
                }
                for deployment_name, deployment in app.deployments.items()
            },
        }
    proxies = {node_id: str(getattr(state, "value", state)) for node_id, state in status.proxies.items()}
    return {"applications": applications, "proxies": proxies, "checked_at": time.time()}
