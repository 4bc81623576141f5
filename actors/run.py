"""Workflow runs on Ray: `WorkflowRunActor` executes one run at a time; `RunPool` (named `runs`, one per
cluster) binds runs to actors.

Starting a process costs ~0.5 s of CPU (docs/architecture.md "The cost model"), so short runs bind to warm actors
(`run-pool:<n>`): a run holds a slot of a warm actor for its whole active life, and an actor holds up to
`ORCHESTRATOR_RUN_POOL_CONCURRENCY` runs at once (a run mostly waits on the database). The pool keeps
`ORCHESTRATOR_RUN_POOL_SIZE` actors, grows to `ORCHESTRATOR_RUN_POOL_MAX_SIZE` while runs queue and the
cluster has CPU unreserved, and shrinks back when they idle. A run asking for more than a warm actor's
shape (its execution options' `resources`, else its agent's `resource_limits`, beyond
`ORCHESTRATOR_RUN_POOL_CPU`) gets an actor of its own, `run:<execution id>`, with exactly those
resources; Ray places it when they are free, and the autoscaler is asked for a node when no node has
them. A waiting run (approval, task) has given its slot back: it holds no process.

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
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError

from actors.metrics import install_ray_metrics
from actors.router_client import RouterOnRay, wake_event_hub_on_commit
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
    """Executes runs, up to `run_pool_concurrency` at once (one when it is a run's own actor), each on a
    thread and a database connection of its own."""

    def __init__(self, settings: Settings, name: str, concurrency: int = 1) -> None:
        configure_logging(settings.log_level)
        telemetry_setup.configure(settings, "run")
        install_ray_metrics()
        wake_event_hub_on_commit(settings)
        self._name = name
        self._db = Database(
            settings.database_url, pool_size=concurrency, max_overflow=1, application_name="orchestrator:run"
        )
        # Shipped code is loaded only by an actor of one run (`run:<id>`), never by a pooled one.
        self._store = DatabaseRunStore(
            self._db, settings, router=RouterOnRay(settings), load_code=name.startswith(run_actor_name(""))
        )
        self._env = environment(settings, ray_map)
        # Each run's nodes run here (a node's timeout leaves its thread behind): two per run at once.
        self._threads = ThreadPoolExecutor(max_workers=2 * concurrency + 2, thread_name_prefix="node")

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


@dataclass
class _Slot:
    """One warm actor and the pool's workers feeding it (one per run it may hold at once)."""

    index: int
    handle: Any
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    running: int = 0
    idle_since: float = field(default_factory=time.monotonic)
    recycle: bool = False  # a node overran its timeout there: restart it once its runs have ended


class RunPool:
    """Queues runs and binds each to a free slot of a warm actor, or to an actor of its own when it asks
    for more than a warm actor's shape.

    The pool scales like a Serve deployment: `run_pool_size` warm actors always, each holding up to
    `run_pool_concurrency` runs; when runs have queued for `run_pool_upscale_delay_s` with every slot busy,
    it starts another actor (up to `run_pool_max_size`, and only while the cluster has a CPU unreserved);
    an actor above the floor that ran nothing for `run_pool_idle_s` is stopped."""

    TICK_S = 0.05

    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.log_level)
        self._settings = settings
        self._workflows = settings.workflows
        self._namespace = settings.ray.ray_namespace
        self._queue: asyncio.Queue[tuple[str, str | None, dict[str, str] | None]] = asyncio.Queue()
        self._known: set[str] = set()  # queued or running here: a second submit of the same run is ignored
        self._slots: dict[int, _Slot] = {}
        self._starting = False
        self._backlog_since: float | None = None
        self._scaler: asyncio.Task[None] | None = None
        # The floor, and the warm actors a previous incarnation of the pool had started above it.
        floor = range(self._workflows.run_pool_size)
        for index in sorted(set(floor) | self._surviving()):
            self._slots[index] = _Slot(index, self._start_actor(index))

    @property
    def _floor(self) -> int:
        return self._workflows.run_pool_size

    @property
    def _ceiling(self) -> int:
        return max(self._workflows.run_pool_size, self._workflows.run_pool_max_size)

    def _surviving(self) -> set[int]:
        """Indexes of the `run-pool:<n>` actors alive in this namespace (a restarted pool adopts them)."""
        prefix = pool_actor_name(0)[:-1]
        try:
            names = ray.util.list_named_actors(all_namespaces=True)
        except Exception:
            return set()
        return {
            int(entry["name"][len(prefix) :])
            for entry in names
            if entry.get("namespace") == self._namespace
            and entry["name"].startswith(prefix)
            and entry["name"][len(prefix) :].isdigit()
        }

    def _start_actor(self, index: int) -> Any:
        concurrency = self._workflows.run_pool_concurrency
        return (
            ray.remote(max_restarts=-1, max_task_retries=0)(WorkflowRunActor)
            .options(
                name=pool_actor_name(index),
                namespace=self._namespace,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=self._workflows.run_pool_cpu,
                max_concurrency=concurrency + 1,  # and a ping
            )
            .remote(self._settings, pool_actor_name(index), concurrency)
        )

    def _ensure_started(self) -> None:
        if self._scaler is None:
            for slot in self._slots.values():
                self._feed(slot)
            self._scaler = asyncio.get_running_loop().create_task(self._scale_forever())

    def _feed(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        slot.workers = [loop.create_task(self._work(slot)) for _ in range(self._workflows.run_pool_concurrency)]

    async def submit(
        self, execution_id: str, resources: dict[str, float] | None = None, trace: dict[str, str] | None = None
    ) -> bool:
        """Take a run (idempotent while it is here). With `resources` (a Ray request) beyond the pool's
        shape it gets an actor of its own. `trace` (the submitter's) goes on to the actor that runs it."""
        self._ensure_started()
        if execution_id in self._known:
            return False
        self._known.add(execution_id)
        if resources and self._exceeds_pool(resources):
            asyncio.get_running_loop().create_task(self._dedicated(execution_id, resources, trace))
        elif not self._slots and self._ceiling == 0:
            asyncio.get_running_loop().create_task(self._dedicated(execution_id, {}, trace))
        else:
            await self._queue.put((execution_id, None, trace))
        return True

    async def stats(self) -> dict[str, Any]:
        return {
            "pool_size": len(self._slots),
            "floor": self._floor,
            "ceiling": self._ceiling,
            "concurrency": self._workflows.run_pool_concurrency,
            "busy": sum(slot.running for slot in self._slots.values()),
            "queued": self._queue.qsize(),
            "known": len(self._known),
        }

    def _exceeds_pool(self, request: dict[str, float]) -> bool:
        """A Ray resource request (`CPU`, `memory`, `GPU`) beyond what a pooled actor reserves."""
        extra = set(request) - {"CPU"}
        return bool(extra) or request.get("CPU", 0.0) > self._workflows.run_pool_cpu

    async def _work(self, slot: _Slot) -> None:
        while True:
            while slot.recycle:  # restart the actor once its runs have ended; take nothing meanwhile
                if slot.running == 0:
                    ray.kill(slot.handle, no_restart=False)
                    slot.recycle = False
                else:
                    await asyncio.sleep(self.TICK_S)
            execution_id, takeover, trace = await self._queue.get()
            slot.running += 1
            token = f"{pool_actor_name(slot.index)}#{uuid.uuid4().hex[:12]}"
            try:
                result = await slot.handle.execute.remote(execution_id, token, takeover, trace)
                slot.recycle = slot.recycle or bool(result.get("recycle"))  # a node's thread may still run
                self._known.discard(execution_id)
            except RayActorError:
                # The actor died mid-run. Ray restarts it, but when its node was lost only once the GCS has declared
                # the node dead (~15 s of health checks): an actor of the pool's shape, placed now where there is
                # room, takes the run over at once (its lease) and resumes it (bench/README.md "A worker node lost").
                log.warning(
                    "run %s: actor %s died; resuming the run on a fresh actor",
                    execution_id,
                    pool_actor_name(slot.index),
                )
                request = {"CPU": self._workflows.run_pool_cpu} if self._workflows.run_pool_cpu else {}
                asyncio.get_running_loop().create_task(self._dedicated(execution_id, request, trace, takeover=token))
            except Exception:
                log.exception("run %s failed to execute on %s", execution_id, pool_actor_name(slot.index))
                self._known.discard(execution_id)
            finally:
                slot.running -= 1
                if slot.running == 0:
                    slot.idle_since = time.monotonic()

    async def _scale_forever(self) -> None:
        while True:
            await asyncio.sleep(self.TICK_S)
            try:
                self._scale(time.monotonic())
            except Exception:
                log.exception("run pool: scaling pass failed")

    def _scale(self, now: float) -> None:
        capacity = len(self._slots) * self._workflows.run_pool_concurrency
        backlog = self._queue.qsize() > 0 and sum(slot.running for slot in self._slots.values()) >= capacity
        if not backlog:
            self._backlog_since = None
        elif self._backlog_since is None:
            self._backlog_since = now
        elif (
            now - self._backlog_since >= self._workflows.run_pool_upscale_delay_s
            and not self._starting
            and len(self._slots) < self._ceiling
            and self._cpu_unreserved()
        ):
            self._starting = True
            asyncio.get_running_loop().create_task(self._grow())
            return
        idle = [
            slot
            for slot in self._slots.values()
            if slot.running == 0 and now - slot.idle_since >= self._workflows.run_pool_idle_s
        ]
        if idle and len(self._slots) > self._floor and not backlog:
            self._shrink(max(idle, key=lambda slot: slot.index))

    def _cpu_unreserved(self) -> bool:
        """At least one CPU (and a warm actor's own reservation) free in the cluster's resources."""
        free = ray.available_resources().get("CPU", 0.0)
        return free >= max(1.0, self._workflows.run_pool_cpu)

    async def _grow(self) -> None:
        index = next(i for i in range(self._ceiling) if i not in self._slots)
        try:
            slot = _Slot(index, self._start_actor(index))
            await slot.handle.ping.remote()  # started: its process is up, its database connection not yet used
            self._slots[index] = slot
            self._feed(slot)
            log.info("run pool: grew to %d warm actors (%d queued)", len(self._slots), self._queue.qsize())
        except Exception:
            log.exception("run pool: could not start %s", pool_actor_name(index))
        finally:
            self._starting = False
            self._backlog_since = None

    def _shrink(self, slot: _Slot) -> None:
        del self._slots[slot.index]
        for worker in slot.workers:  # each waits on the queue: nothing of a run is lost
            worker.cancel()
        ray.kill(slot.handle, no_restart=True)
        log.info("run pool: shrank to %d warm actors (%s idle)", len(self._slots), pool_actor_name(slot.index))

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
