"""Workflow runs on Ray: `WorkflowRunActor` executes one run at a time; `RunPool` (named `runs`, one per
cluster) binds runs to actors.

Starting a process costs ~0.5 s of CPU (docs/architecture.md "The cost model"), so short runs bind to warm actors
(`run-pool:<n>`, `ORCHESTRATOR_RUN_POOL_SIZE` of them, `ORCHESTRATOR_RUN_POOL_CPU` each): a run holds its
actor for its whole active life, one run per actor. A run asking for more than that shape (its execution
options' `resources`, else its agent's `resource_limits`) gets an actor of its own, `run:<execution id>`,
with exactly those resources; Ray places it when they are free, and the autoscaler is asked for a node
when no node has them. A waiting run (approval, task) has given its actor back: it holds no process.

Durability is the database's: the pool keeps nothing that is not also a row. If a run's actor dies
mid-step, the pool hands the run at once to a fresh actor of its own (`run:<id>`, the pool's shape), which
takes over the dead holder's lease and resumes from the last recorded step, without waiting for Ray to
restart the dead one (after a node's loss, not before its health checks declare the node dead); if the pool
itself dies, the reconciler finds the runs whose lease ran out and submits them again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from ray.exceptions import RayActorError

from actors.metrics import install_ray_metrics
from actors.router_client import RouterOnRay
from core import metrics, telemetry_setup, tracing
from core.imports import import_object
from core.logging import configure_logging
from core.settings import Settings
from frameworks import load_node_runtime
from persistence.db import Database
from runtime.engine import Outcome, RunEnvironment, execute
from schedulers import admission
from services.executions import DatabaseRunStore

log = logging.getLogger("orchestrator.runs")

MAP_TASK_CPU = 0.25


def pool_actor_name(index: int) -> str:
    return f"run-pool:{index}"


def run_actor_name(execution_id: str) -> str:
    return f"run:{execution_id}"


def environment(settings: Settings, map_runner: Callable[[str, list[Any], int], list[Any]] | None) -> RunEnvironment:
    workflows = settings.workflows
    api_key = workflows.llm_api_key.get_secret_value() if workflows.llm_api_key else None
    return RunEnvironment(
        code_modules=settings.agents.code_modules,
        http_allowed=workflows.http_allowed,
        map_runner=map_runner,
        llm={
            "base_url": workflows.llm_base_url,
            "model": workflows.llm_model,
            "api_key": api_key,
            "cost_per_1k_tokens": workflows.llm_cost_per_1k_tokens,
        },
        default_retry_count=workflows.run_default_retry_count,
        observe_step=metrics.observe_step_latency,
        load_framework=load_node_runtime,
    )


@ray.remote(num_cpus=MAP_TASK_CPU, max_retries=0)
def _map_item(path: str, item: Any) -> Any:
    return import_object(path)(item)


def ray_map(path: str, items: list[Any], parallel: int) -> list[Any]:
    """A `map` node's items as Ray tasks, at most `parallel` in flight, results in input order."""
    results: dict[Any, int] = {}
    out: list[Any] = [None] * len(items)
    pending: list[Any] = []
    for index, item in enumerate(items):
        if len(pending) >= parallel:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                out[results.pop(ref)] = ray.get(ref)
        ref = _map_item.remote(path, item)
        results[ref] = index
        pending.append(ref)
    for ref in pending:
        out[results.pop(ref)] = ray.get(ref)
    return out


class WorkflowRunActor:
    """Executes runs, one at a time, with its own database connection (one, kept while the actor lives)."""

    def __init__(self, settings: Settings, name: str) -> None:
        configure_logging(settings.log_level)
        telemetry_setup.configure(settings, "run")
        install_ray_metrics()
        self._name = name
        self._db = Database(settings.database_url, pool_size=1, max_overflow=1, application_name="orchestrator:run")
        # Shipped code is loaded only by an actor of one run (`run:<id>`), never by a pooled one.
        self._store = DatabaseRunStore(
            self._db, settings, router=RouterOnRay(settings), load_code=name.startswith(run_actor_name(""))
        )
        self._env = environment(settings, ray_map)
        self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="node")

    def execute(
        self, execution_id: str, token: str, takeover: str | None = None, trace: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """`trace`: the submitter's `tracing.carrier()`; the run is a span of that trace."""
        with tracing.continued(
            trace, "run.execute", {"orchestrator.execution_id": execution_id, "orchestrator.actor": self._name}
        ):
            outcome: Outcome = execute(
                self._store, execution_id, token, self._env, takeover=takeover, pool=self._threads
            )
        return {"status": outcome.status, "recycle": outcome.leaked_thread, "pid": os.getpid()}

    def ping(self) -> int:
        return os.getpid()


class RunPool:
    """Queues runs and binds each to a free warm actor, or to an actor of its own when it asks for more."""

    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.log_level)
        self._settings = settings
        self._namespace = settings.ray.ray_namespace
        self._queue: asyncio.Queue[tuple[str, str | None, dict[str, str] | None]] = asyncio.Queue()
        self._known: set[str] = set()  # queued or running here: a second submit of the same run is ignored
        self._busy = 0
        self._slots = [self._start_slot(index) for index in range(settings.workflows.run_pool_size)]
        self._workers: list[asyncio.Task[None]] = []

    def _start_slot(self, index: int) -> Any:
        return (
            ray.remote(max_restarts=-1, max_task_retries=0)(WorkflowRunActor)
            .options(
                name=pool_actor_name(index),
                namespace=self._namespace,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=self._settings.workflows.run_pool_cpu,
                max_concurrency=2,
            )
            .remote(self._settings, pool_actor_name(index))
        )

    def _ensure_workers(self) -> None:
        if not self._workers:
            self._workers = [
                asyncio.get_running_loop().create_task(self._work(index)) for index in range(len(self._slots))
            ]

    async def submit(
        self, execution_id: str, resources: dict[str, float] | None = None, trace: dict[str, str] | None = None
    ) -> bool:
        """Take a run (idempotent while it is here). With `resources` (a Ray request) beyond the pool's
        shape it gets an actor of its own. `trace` (the submitter's) goes on to the actor that runs it."""
        self._ensure_workers()
        if execution_id in self._known:
            return False
        self._known.add(execution_id)
        if resources and self._exceeds_pool(resources):
            asyncio.get_running_loop().create_task(self._dedicated(execution_id, resources, trace))
        elif not self._slots:
            asyncio.get_running_loop().create_task(self._dedicated(execution_id, {}, trace))
        else:
            await self._queue.put((execution_id, None, trace))
        return True

    async def stats(self) -> dict[str, Any]:
        return {
            "pool_size": len(self._slots),
            "busy": self._busy,
            "queued": self._queue.qsize(),
            "known": len(self._known),
        }

    def _exceeds_pool(self, request: dict[str, float]) -> bool:
        """A Ray resource request (`CPU`, `memory`, `GPU`) beyond what a pooled actor reserves."""
        extra = set(request) - {"CPU"}
        return bool(extra) or request.get("CPU", 0.0) > self._settings.workflows.run_pool_cpu

    async def _work(self, index: int) -> None:
        while True:
            execution_id, takeover, trace = await self._queue.get()
            self._busy += 1
            token = f"{pool_actor_name(index)}#{uuid.uuid4().hex[:12]}"
            try:
                result = await self._slots[index].execute.remote(execution_id, token, takeover, trace)
                if result.get("recycle"):  # a node overran its timeout: its thread may still run
                    ray.kill(self._slots[index], no_restart=False)
                self._known.discard(execution_id)
            except RayActorError:
                # The actor died mid-run. Ray restarts it, but when its node was lost only once the GCS has declared
                # the node dead (~15 s of health checks): an actor of the pool's shape, placed now where there is
                # room, takes the run over at once (its lease) and resumes it (bench/README.md "A worker node lost").
                log.warning(
                    "run %s: actor %s died; resuming the run on a fresh actor", execution_id, pool_actor_name(index)
                )
                request = (
                    {"CPU": self._settings.workflows.run_pool_cpu} if self._settings.workflows.run_pool_cpu else {}
                )
                asyncio.get_running_loop().create_task(self._dedicated(execution_id, request, trace, takeover=token))
            except Exception:
                log.exception("run %s failed to execute on %s", execution_id, pool_actor_name(index))
                self._known.discard(execution_id)
            finally:
                self._busy -= 1

    async def _dedicated(
        self,
        execution_id: str,
        request: dict[str, float],
        trace: dict[str, str] | None,
        takeover: str | None = None,
    ) -> None:
        """The run on an actor of its own, `run:<id>`, with `request`; `takeover`: the lease of a holder that died."""
        options = {
            **admission.actor_options(request),
            "name": run_actor_name(execution_id),
            "namespace": self._namespace,
            "max_concurrency": 2,
        }
        try:
            for _ in range(3):
                actor = (
                    ray.remote(max_restarts=0)(WorkflowRunActor)
                    .options(**options)
                    .remote(self._settings, run_actor_name(execution_id))
                )
                token = f"{run_actor_name(execution_id)}#{uuid.uuid4().hex[:12]}"
                try:
                    await actor.execute.remote(execution_id, token, takeover, trace)
                    ray.kill(actor)
                    return
                except RayActorError:
                    log.warning("run %s: its actor died; starting another", execution_id)
                    takeover = token
            log.error("run %s: its actor died three times; the reconciler will retry later", execution_id)
        finally:
            self._known.discard(execution_id)
