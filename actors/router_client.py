"""Messages to the cluster's singleton actors (the task router, the run pool), fire-and-forget: the
database already holds what a message says, and each actor's own pass (the router's tick, the
reconciler's resume of runs) re-reads it, so a lost message delays the work by at most one pass.

`RouterOnRay` and `RunPoolOnRay` implement the services' `RouterChannel` and `RunLauncher` ports."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError

from actors.names import EVENT_HUB_NAME, ROUTER_NAME, RUN_POOL_NAME
from core import tracing
from core.settings import Settings
from persistence import db as database
from services.ports import RouterMessage

log = logging.getLogger("orchestrator.actors")

# Handles looked up once per process (a lookup is a round trip to Ray's control store, which would
# otherwise be paid on every task created); forgotten when a call through one fails.
_handles: dict[tuple[str, str], Any] = {}


def _actor(settings: Settings, name: str) -> Any:
    key = (settings.ray.ray_namespace, name)
    handle = _handles.get(key)
    if handle is None:
        handle = _handles[key] = ray.get_actor(name, namespace=settings.ray.ray_namespace)
    return handle


def tell(settings: Settings, name: str, method: str, *args: Any, trace: dict[str, str] | None = None) -> None:
    """`trace`: `tracing.carrier()`, for methods that take it (the run pool's submit). The router's messages go
    through `notify`."""
    if not ray.is_initialized():
        return
    try:
        call = getattr(_actor(settings, name), method)
        if trace is None:
            call.remote(*args)
        else:
            call.remote(*args, trace=trace)
    except Exception as exc:  # restarting or absent: its own pass catches up
        _handles.pop((settings.ray.ray_namespace, name), None)
        log.warning("%s not told %s: %s", name, method, exc)


def ask(settings: Settings, name: str, method: str, *args: Any, timeout_s: float = 2.0) -> Any:
    if not ray.is_initialized():
        return None
    try:
        return ray.get(getattr(_actor(settings, name), method).remote(*args), timeout=timeout_s)
    except Exception as exc:
        _handles.pop((settings.ray.ray_namespace, name), None)
        log.warning("%s.%s unavailable: %s", name, method, exc)
        return None


def notify(settings: Settings, message: RouterMessage) -> None:
    """Tell the task router (`services.ports` lists the messages), within the caller's trace and
    correlation id. The message goes through this process's mailbox: sent at once when the router is not
    busy with this process's previous batch, otherwise with everything else that arrives meanwhile."""
    if ray.is_initialized():
        _router_mailbox(settings).put((message, tracing.carrier()))


def _router_mailbox(settings: Settings) -> Mailbox:
    mailbox = _mailboxes.get(settings.ray.ray_namespace)
    if mailbox is None:
        with _mailboxes_lock:
            mailbox = _mailboxes.get(settings.ray.ray_namespace)
            if mailbox is None:
                mailbox = _mailboxes[settings.ray.ray_namespace] = Mailbox(
                    "router", lambda batch: _deliver(settings, ROUTER_NAME, batch)
                )
    return mailbox


DELIVER_TIMEOUT_S = 30.0


def _deliver(settings: Settings, name: str, batch: list[Any]) -> None:
    """One batch to the actor's `deliver`, waiting for its answer (the waiting is what batches the next)."""
    try:
        ray.get(_actor(settings, name).deliver.remote(batch), timeout=DELIVER_TIMEOUT_S)
    except GetTimeoutError:  # delivered and still being worked on: the next batch goes alongside
        log.warning("%s busy with a batch of %d message(s) for over %.0f s", name, len(batch), DELIVER_TIMEOUT_S)
    except Exception as exc:  # restarting or absent: its own pass catches up
        _handles.pop((settings.ray.ray_namespace, name), None)
        log.warning("%s not sent %d message(s): %s", name, len(batch), exc)


class Mailbox:
    """Messages sent in batches by one thread: `send(batch)` returns when the receiver has the batch, and
    whatever is put meanwhile goes with the next call. Idle, a message leaves at once (a batch of one);
    under load, one call carries many, which is what keeps a flood of task creations from costing a Ray
    call, on both sides, per task. `send` handles its own failures (lost batches are caught up by the
    receiver's own pass)."""

    MAX_BATCH = 1000  # messages per call

    def __init__(self, name: str, send: Callable[[list[Any]], None]) -> None:
        self._name, self._send = name, send
        self._pending: list[Any] = []
        self._ready = threading.Condition()
        self._sender: threading.Thread | None = None

    def put(self, message: Any) -> None:
        with self._ready:
            self._pending.append(message)
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(target=self._send_forever, name=f"mailbox-{self._name}", daemon=True)
                self._sender.start()
            self._ready.notify()

    def _send_forever(self) -> None:
        while True:
            with self._ready:
                while not self._pending:
                    self._ready.wait()
                batch, self._pending = self._pending[: self.MAX_BATCH], self._pending[self.MAX_BATCH :]
            try:
                self._send(batch)
            except Exception:  # never let the sender die with messages waiting
                log.exception("%s: a batch of %d message(s) was not sent", self._name, len(batch))


_mailboxes: dict[str, Mailbox] = {}
_mailboxes_lock = threading.Lock()


def stats(settings: Settings, timeout_s: float = 2.0) -> dict[str, Any] | None:
    return ask(settings, ROUTER_NAME, "stats", timeout_s=timeout_s)


def submit_run(settings: Settings, execution_id: str, resources: dict[str, Any] | None = None) -> None:
    """Hand a run to the run pool (a repeated submit of the same run is harmless)."""
    tell(settings, RUN_POOL_NAME, "submit", execution_id, resources or None, trace=tracing.carrier())


class RouterOnRay:
    """`services.ports.RouterChannel`: the task router, through this process's mailbox."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def send(self, message: RouterMessage) -> None:
        notify(self._settings, message)

    def stats(self, *, timeout_s: float) -> dict[str, Any] | None:
        return stats(self._settings, timeout_s=timeout_s)


class RunPoolOnRay:
    """`services.ports.RunLauncher`: the pool of run actors."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def submit(self, execution_id: str, resources: dict[str, Any] | None = None) -> None:
        submit_run(self._settings, execution_id, resources)


def wake_event_hub_on_commit(settings: Settings) -> None:
    """On SQLite, this process tells the event hub after each commit that added events, so that the relay
    fans them out at once instead of at its next poll (on Postgres, a trigger's NOTIFY does it for every
    writer). Wake-ups that come while one is on its way go as one call."""
    if not settings.database_url.startswith("sqlite"):
        return
    mailbox = Mailbox("event-hub", lambda _: _deliver_wake(settings))
    database.on_events_committed(lambda: mailbox.put(None) if ray.is_initialized() else None)


def _deliver_wake(settings: Settings) -> None:
    try:
        ray.get(_actor(settings, EVENT_HUB_NAME).wake.remote(), timeout=DELIVER_TIMEOUT_S)
    except Exception as exc:  # restarting or absent: its poll finds the events
        _handles.pop((settings.ray.ray_namespace, EVENT_HUB_NAME), None)
        log.debug("event hub not woken: %s", exc)
