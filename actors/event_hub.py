"""`EventHub`: one per cluster; takes every event out of the outbox and fans it out (docs/architecture.md
"How a request flows", step 4).

The outbox relay: each batch of new events is mirrored to the Redis stream `<prefix>events` when Redis is
configured, becomes one pending delivery per matching webhook, and is marked published, the last two in one
transaction. At least once: a crash before the commit relays the batch again (consumers de-duplicate by
event id; a webhook delivery is unique per event). Redis being unreachable does not hold the rest back:
the batch is marked published but not streamed, and the stream catches up, in order, once Redis is back.
The relay looks at the outbox when a commit adds events, not only at its poll: on Postgres a trigger on the
events table NOTIFYs `orchestrator_events` at commit and the hub LISTENs on a connection of its own; on SQLite
each writing process calls `wake` after such a commit. The poll (`ORCHESTRATOR_EVENT_RELAY_INTERVAL_S`)
stays as the safety net for a lost wake-up.

Live fan-out: relayed events go into a numbered ring of recent events. Every API replica that holds
WebSocket connections long-polls `poll(epoch, after)` and fans what it gets out to its own connections,
so one actor call per replica carries an event to any number of subscribers, and a replica that was slow
catches up from the ring. `epoch` changes when the hub restarts (its ring is memory), so that a replica
never mistakes a new ring's numbers for the old one's.

Webhook deliveries run here too, concurrently, with retries and backoff (`services.webhooks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from typing import Any

import httpx
import redis
from sqlalchemy.engine import make_url

from actors.metrics import install_ray_metrics
from core import metrics
from core.logging import configure_logging
from core.settings import Settings
from persistence.db import Database
from services import events, tasks, webhooks

log = logging.getLogger("orchestrator.events")

RETRY_S = 2.0
# The channel of migration 0018's trigger on the events table.
NOTIFY_CHANNEL = "orchestrator_events"
# The Redis stream keeps about this many events (XADD MAXLEN ~).
STREAM_MAXLEN = 100_000
WEBHOOK_IDLE_S = 1.0


class EventHub:
    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.log_level)
        install_ray_metrics()
        self._settings = settings
        # Two connections: the relay's and the webhook loop's (their database work runs in threads).
        self._db = Database(
            settings.database_url,
            pool_size=2,
            max_overflow=1,
            application_name="orchestrator:event-hub",
            sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms,
        )
        self._redis = (
            redis.Redis.from_url(settings.redis.redis_url, socket_timeout=2, socket_connect_timeout=2)
            if settings.redis.redis_url
            else None
        )
        self._stream = f"{settings.redis.redis_key_prefix}events"
        # Events fanned out while the stream was unreachable wait in the outbox (`events.unstreamed`); until
        # the stream has caught up with them, new ones join them there, so the stream keeps their order.
        # At start: whatever a previous hub left.
        self._stream_behind = self._redis is not None
        self._next_catch_up = 0.0
        self._epoch = uuid.uuid4().hex
        self._ring: deque[tuple[int, dict[str, Any]]] = deque(maxlen=settings.realtime.event_hub_buffer)
        self._seq = 0
        self._new_events: asyncio.Condition | None = None
        self._webhooks_due: asyncio.Event | None = None
        # Set when a commit added events (Postgres: NOTIFY from the events trigger; SQLite: the writer's
        # `wake`): the relay looks at once instead of at its next poll.
        self._outbox_changed: asyncio.Event | None = None
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> bool:
        """Start the loops (idempotent): called by `orchestrator up`, by the reconciler's passes and by the
        first poll, so that a restarted hub resumes by itself."""
        if not self._loops:
            self._new_events = asyncio.Condition()
            self._webhooks_due = asyncio.Event()
            self._outbox_changed = asyncio.Event()
            self._loops = [
                asyncio.create_task(loop()) for loop in (self._relay_loop, self._webhook_loop, self._health_loop)
            ]
            if self._db.dialect == "postgresql":
                loop = asyncio.get_running_loop()
                threading.Thread(target=self._listen_forever, args=(loop,), name="outbox-listen", daemon=True).start()
        return True

    async def wake(self) -> None:
        """Events were committed (a SQLite writer says so after its commit): relay them now."""
        await self.start()
        assert self._outbox_changed is not None
        self._outbox_changed.set()

    def _listen_forever(self, loop: asyncio.AbstractEventLoop) -> None:
        """Postgres: `LISTEN orchestrator_events` on a connection of its own; each notification wakes the
        relay. Reconnects after a failure (the relay's poll covers the gap)."""
        import psycopg

        dsn = make_url(self._settings.database_url).set(drivername="postgresql").render_as_string(False)
        while not loop.is_closed():  # the hub's loop ends with its process (or a test)
            try:
                with psycopg.connect(
                    dsn, autocommit=True, application_name="orchestrator:event-hub", connect_timeout=5
                ) as connection:
                    connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    loop.call_soon_threadsafe(self._outbox_changed_set)  # whatever came while not listening
                    for _ in connection.notifies():
                        loop.call_soon_threadsafe(self._outbox_changed_set)
            except Exception as exc:
                if loop.is_closed():
                    return
                log.warning("outbox listener: %s; listening again in %.0f s", exc, RETRY_S)
            time.sleep(RETRY_S)

    def _outbox_changed_set(self) -> None:
        if self._outbox_changed is not None:
            self._outbox_changed.set()

    async def poll(self, epoch: str | None, after: int | None, timeout_s: float = 15.0) -> dict[str, Any]:
        """Events numbered after `after`: at once if there are, else when the next arrives or at the timeout.
        `after=None` positions a new caller at the present. `reset` says the caller's position was not in
        this ring (the hub restarted, or the caller fell out of it): it continues from the ring's oldest."""
        await self.start()
        assert self._new_events is not None
        reset = False
        if after is None:
            after = self._seq
        elif epoch != self._epoch or after < self._oldest() - 1:
            reset, after = True, self._oldest() - 1
        if after >= self._seq and timeout_s > 0:
            async with self._new_events:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new_events.wait_for(lambda: self._seq > after), timeout_s)
        messages = [message for seq, message in self._ring if seq > after]
        return {"epoch": self._epoch, "seq": self._seq, "events": messages, "reset": reset}

    async def publish_live(self, message: dict[str, Any]) -> int:
        """A live-only message (not in the outbox): the periodic `system.health`."""
        await self.start()
        return await self._append([message])

    async def relay_once(self) -> int:
        """One batch of the outbox (the relay loop's step), after the Redis stream's catch-up when it is due."""
        if self._stream_behind and time.monotonic() >= self._next_catch_up:
            await asyncio.to_thread(self._catch_up_stream)
        batch, messages = await asyncio.to_thread(self._unpublished)
        if not batch:
            return 0
        # Live subscribers first: they wait on nothing that follows (a failure below relays the batch again,
        # and subscribers de-duplicate by event id, as after a crash).
        await self._append(messages)
        enqueued = await asyncio.to_thread(self._relay_batch, batch, messages)
        if enqueued and self._webhooks_due is not None:
            self._webhooks_due.set()
        return len(messages)

    def _unpublished(self) -> tuple[list[Any], list[dict[str, Any]]]:
        with self._db.session() as session:
            batch = events.unpublished(session)
            return batch, [events.as_message(event) for event in batch]

    def _relay_batch(self, batch: list[Any], messages: list[dict[str, Any]]) -> int:
        streamed = self._redis is None or (not self._stream_behind and self._stream_out(messages))
        with self._db.transaction() as session:
            enqueued = webhooks.enqueue_deliveries(session, batch)
            events.mark_published(session, [event.id for event in batch], streamed=streamed)
        return enqueued

    def _stream_out(self, messages: list[dict[str, Any]]) -> bool:
        """Mirror to the Redis stream; False when Redis is unreachable: the events go on to webhooks and live
        subscribers all the same, and the stream catches up with them later (at least once)."""
        try:
            self._xadd(messages)
        except redis.RedisError as exc:
            log.warning(
                "redis stream unreachable (%s): events still go to webhooks and subscribers; the stream "
                "catches up when it is back",
                exc,
            )
            self._stream_behind, self._next_catch_up = True, time.monotonic() + RETRY_S
            return False
        return True

    def _catch_up_stream(self) -> None:
        """Stream the oldest batch of the events fanned out while Redis was unreachable (one batch per relay
        step, so that a long backlog does not hold the fan-out back); done when none is left."""
        with self._db.session() as session:
            batch = events.unstreamed(session)
        if not batch:
            self._stream_behind = False
            return
        try:
            self._xadd([events.as_message(event) for event in batch])
        except redis.RedisError:  # still away: try again later
            self._next_catch_up = time.monotonic() + RETRY_S
            return
        with self._db.transaction() as session:
            events.mark_streamed(session, [event.id for event in batch])
        log.info("redis stream: %d event(s) caught up", len(batch))

    def _xadd(self, messages: list[dict[str, Any]]) -> None:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for message in messages:
            pipe.xadd(self._stream, {"event": json.dumps(message)}, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.execute()

    async def _append(self, messages: list[dict[str, Any]]) -> int:
        assert self._new_events is not None
        async with self._new_events:
            for message in messages:
                self._seq += 1
                self._ring.append((self._seq, message))
            self._new_events.notify_all()
        return self._seq

    def _oldest(self) -> int:
        return self._ring[0][0] if self._ring else self._seq + 1

    async def _relay_loop(self) -> None:
        idle = self._settings.realtime.event_relay_interval_s
        assert self._outbox_changed is not None
        while True:
            try:
                self._outbox_changed.clear()
                if await self.relay_once() == 0:
                    with contextlib.suppress(TimeoutError):  # the poll: the safety net behind the wake-ups
                        await asyncio.wait_for(self._outbox_changed.wait(), idle)
            except Exception as exc:  # Redis or the database away: keep the rows, try again
                log.warning("outbox relay: %s", exc)
                await asyncio.sleep(RETRY_S)

    async def _webhook_loop(self) -> None:
        assert self._webhooks_due is not None
        async with httpx.AsyncClient(follow_redirects=False) as client:
            while True:
                try:
                    counts = await webhooks.deliver_due(self._db, self._settings, client)
                    metrics.record_webhook_deliveries(counts)
                    if sum(counts.values()):
                        continue  # there may be more due
                    wait = await asyncio.to_thread(webhooks.next_due_in, self._db)
                except Exception as exc:
                    log.warning("webhook deliveries: %s", exc)
                    wait = RETRY_S
                self._webhooks_due.clear()
                try:
                    timeout = WEBHOOK_IDLE_S if wait is None else max(0.0, min(wait, WEBHOOK_IDLE_S))
                    await asyncio.wait_for(self._webhooks_due.wait(), timeout)
                except TimeoutError:
                    pass

    async def _health_loop(self) -> None:
        """`system.health` for admins subscribed to `system`: the cluster's resources and the work queued."""
        import ray

        while True:
            await asyncio.sleep(self._settings.realtime.system_health_interval_s)
            try:
                # Blocking calls: off the loop, where every replica's long poll waits.
                total, available, nodes = await asyncio.to_thread(
                    lambda: (ray.cluster_resources(), ray.available_resources(), ray.nodes())
                )
                queue = await asyncio.to_thread(self._queue_figures)
                data = {
                    "cpu_total": total.get("CPU", 0.0),
                    "cpu_available": available.get("CPU", 0.0),
                    "memory_total": total.get("memory", 0.0),
                    "memory_available": available.get("memory", 0.0),
                    "nodes_alive": sum(1 for node in nodes if node.get("Alive")),
                    **queue,
                }
                await self.publish_live(events.live_message("system.health", data, source="event-hub"))
            except Exception as exc:
                log.warning("system.health: %s", exc)

    def _queue_figures(self) -> dict[str, Any]:
        with self._db.session() as session:
            return tasks.queue_stats(session)
