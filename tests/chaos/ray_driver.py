"""A Ray driver connected to the platform's Ray instance, in a process of its own, taking commands on stdin.

The chaos tests kill the platform's actors through it (`ray.kill` on an actor found by its name in the
platform's namespace, or a Serve replica found by Ray's state API), so that no process of another Ray
instance on the machine is ever touched, and the pytest process itself never becomes a Ray driver.

One JSON command per line in, one JSON answer per line out:
  {"op": "actor", "name": …, "namespace": …}  → {"ok": true, "state": "ALIVE", "pid": 123} (state null: none)
  {"op": "kill", "name": …, "namespace": …}   → {"ok": true, "pid": <the pid killed>}
  {"op": "replicas"}                          → {"ok": true, "replicas": [{"name", "namespace", "pid"}]}
Run as ``python -m tests.chaos.ray_driver <ray address>``.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import ray
from ray.util.state import list_actors

SERVE_NAMESPACE = "serve"


def _actor(name: str, namespace: str) -> dict[str, Any]:
    found = list_actors(filters=[("name", "=", name), ("ray_namespace", "=", namespace)], detail=True)
    # A restarted actor keeps its id, so the list holds one row per named actor; prefer a live one.
    found.sort(key=lambda actor: actor.state != "ALIVE")
    if not found:
        return {"state": None, "pid": None}
    return {"state": found[0].state, "pid": found[0].pid}


def _kill(name: str, namespace: str) -> dict[str, Any]:
    pid = _actor(name, namespace)["pid"]
    # no_restart=False: a crash, as if the process died; Ray restarts an actor that allows restarts.
    ray.kill(ray.get_actor(name, namespace=namespace), no_restart=False)
    return {"pid": pid}


def _replicas() -> dict[str, Any]:
    replicas = [
        {"name": actor.name, "namespace": actor.ray_namespace, "pid": actor.pid}
        for actor in list_actors(filters=[("state", "=", "ALIVE")], detail=True, limit=10_000)
        if "ServeReplica" in (actor.class_name or "")
    ]
    return {"replicas": replicas}


def main() -> None:
    ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            op = command["op"]
            if op == "actor":
                answer = _actor(command["name"], command["namespace"])
            elif op == "kill":
                answer = _kill(command["name"], command["namespace"])
            elif op == "replicas":
                answer = _replicas()
            else:
                raise ValueError(f"unknown op {op!r}")
            print(json.dumps({"ok": True, **answer}), flush=True)
        except Exception as exc:  # answered, so that the test fails with the reason
            print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)


if __name__ == "__main__":
    main()
