"""Live events in an API replica: one feed from the `EventHub`, fanned out to this replica's WebSocket
connections (docs/architecture.md "How a request flows", step 4).

The replica holds one long poll on the hub while it has connections (none costs nothing) and offers each
event to every connection. A connection keeps what its caller may see and its subscriptions match in a
bounded queue; its sender writes the queue to the socket. A consumer that falls more than
`ORCHESTRATOR_WS_BUFFER_MESSAGES` behind is disconnected (close code 4008) instead of holding everyone
else's events back or growing the replica's memory. "Behind" needs a socket that pushes back: under
uvicorn, and behind Serve's HAProxy ingress (each replica serves its WebSockets on its own uvicorn, cluster/
runtime.py) it does; behind Serve's default proxy a replica's sends are queued without bound on Serve's
side, so there the rule only catches a replica that cannot keep up itself (docs/api.md "Real time: WebSocket").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from services.subscriptions import Subscription, Viewer

log = logging.getLogger("orchestrator.realtime")

POLL_TIMEOUT_S = 15.0
RETRY_S = 1.0
CLOSE_SLOW_CONSUMER = 4008

# (epoch, after, timeout_s) -> {"epoch", "seq", "events", "reset"}: `EventHub.poll`.
Poll = Callable[[str | None, int | None, float], Awaitable[dict[str, Any]]]


class Outgoing:
    """One event as the feed offers it to every connection: its text in each message shape is made once, by the
    first connection that sends it, not once per connection (100 subscribers: one `json.dumps`, not 100)."""

    __slots__ = ("_texts", "message")

    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message
        self._texts: dict[Callable[[dict[str, Any]], dict[str, Any]], str] = {}

    def text(self, shape: Callable[[dict[str, Any]], dict[str, Any]]) -> str:
        text = self._texts.get(shape)
        if text is None:
            text = self._texts[shape] = json.dumps(shape(self.message), separators=(",", ":"), default=str)
        return text


class Connection:
    """One WebSocket's subscriptions and outgoing queue. `offer` never blocks: the feed calls it for every
    event and every connection."""

    def __init__(self, viewer: Viewer, buffer: int) -> None:
        self.viewer = viewer
        self.subscriptions: dict[str, Subscription] = {}
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=buffer)
        self.overflowed = asyncio.Event()
        self.buffer = buffer

    def offer(self, event: Outgoing) -> None:
        message = event.message
        if self.overflowed.is_set() or not self.subscriptions or not self.viewer.may_see(message):
            return
        if not any(subscription.matches(message) for subscription in self.subscriptions.values()):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()


class EventFeed:
    """This replica's one subscription to the EventHub."""

    def __init__(self, poll: Poll) -> None:
        self._poll = poll
        self._connections: set[Connection] = set()
        self._epoch: str | None = None
        self._after: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def attach(self, connection: Connection) -> None:
        """Start receiving for `connection`; returns once the feed is positioned at the hub's present, so
        every event relayed from now on reaches it."""
        self._connections.add(connection)
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), POLL_TIMEOUT_S)

    def detach(self, connection: Connection) -> None:
        self._connections.discard(connection)

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while self._connections:
            try:
                # The first call only positions the feed (no wait); later ones wait for new events.
                timeout = POLL_TIMEOUT_S if self._ready.is_set() else 0.0
                result = await self._poll(self._epoch, self._after, timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the hub restarting, or Ray away: keep the connections, try again
                log.warning("event feed: %s", exc)
                self._ready.set()  # connections wait for events, not for the hub
                await asyncio.sleep(RETRY_S)
                continue
            if result["reset"] and self._after is not None:
                log.warning("event feed: the hub restarted or this replica fell behind; some events were missed")
            self._epoch, self._after = result["epoch"], result["seq"]
            self._ready.set()
            for message in result["events"]:
                event = Outgoing(message)
                for connection in list(self._connections):
                    connection.offer(event)
        self._task = None


def ray_hub_poll(settings: Any) -> Poll:
    """`EventHub.poll` through Ray (the handle is looked up once, again after a failure)."""
    import ray

    from actors.names import EVENT_HUB_NAME

    handle: Any = None

    async def poll(epoch: str | None, after: int | None, timeout_s: float) -> dict[str, Any]:
        nonlocal handle
        if handle is None:
            handle = ray.get_actor(EVENT_HUB_NAME, namespace=settings.ray.ray_namespace)
        try:
            return await handle.poll.remote(epoch, after, timeout_s)
        except Exception:
            handle = None
            raise

    return poll
