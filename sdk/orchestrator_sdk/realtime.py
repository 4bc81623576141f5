"""Live events over the platform's WebSocket (`/api/v1/ws`), for the synchronous client:

    for event in client.events.subscribe("tasks", {"project_id": project.id}):
        print(event["type"], event["data"])

A dropped connection is opened again (with backoff) and subscribed again; events published while it was
down are read from `GET /events` since the last one received and yielded first, each once (the live feed
and the catch-up are de-duplicated by event id). Needs `websockets` (`pip install 'orchestrator-sdk[realtime]'`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

CONTROL = frozenset({"authenticated", "subscribed", "unsubscribed", "ping", "pong"})
# The first word of each channel's events (a subscription to `events` gets every event).
PREFIX = {
    "tasks": "task.",
    "executions": "execution.",
    "agents": "agent.",
    "approvals": "approval.",
    "projects": "project.",
    "notifications": "notification.",
    "marketplace": "marketplace.",
    "system": "system.",
}


class EventStream:
    """An iterator of event messages `{"type", "id", "data", "timestamp", "correlation_id"}`; `close()` ends it."""

    def __init__(
        self, client: Any, channel: str, filters: dict[str, Any] | None, *, reconnect: bool, max_backoff: float
    ) -> None:
        self._c = client
        self.channel = channel
        self.filters = dict(filters or {})
        self.reconnect = reconnect
        self.max_backoff = max_backoff
        self.reconnects = 0
        self._ws: Any = None
        self._closed = False
        # Set once the platform confirmed the subscription (each time it is opened again too).
        self.subscribed = threading.Event()
        self._seen: deque[str] = deque(maxlen=5000)
        self._last_timestamp: str | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            from websockets.exceptions import ConnectionClosed
            from websockets.sync.client import connect
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("live events need websockets: pip install 'orchestrator-sdk[realtime]'") from None
        attempt = 0
        while not self._closed:
            try:
                self._c._ensure_auth()
                url = self._c.base_url.replace("http", "ws", 1) + "/ws"
                with connect(url, additional_headers=self._c._credentials.headers(), open_timeout=30) as ws:
                    self._ws = ws
                    ws.send(json.dumps({"type": "subscribe", "channel": self.channel, "filters": self.filters}))
                    yield from self._catch_up()
                    attempt = 0
                    for raw in ws:
                        message = json.loads(raw)
                        if message.get("type") == "error":
                            raise RuntimeError(message.get("error", {}).get("message", "subscription refused"))
                        if message.get("type") == "subscribed":
                            self.subscribed.set()
                        if message.get("type") in CONTROL:
                            continue
                        if self._new(message):
                            yield message
            except (ConnectionClosed, OSError, TimeoutError):
                pass  # dropped: opened again below
            finally:
                self._ws = None
            if self._closed or not self.reconnect:
                return
            self.reconnects += 1
            time.sleep(min(self.max_backoff, 0.2 * 2**attempt))
            attempt += 1

    def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            self._ws.close()

    def drop(self) -> None:
        """Close the connection as a network failure would (the stream opens it again): for tests."""
        if self._ws is not None:
            self._ws.close()

    def _new(self, message: dict[str, Any]) -> bool:
        event_id = message.get("id")
        if event_id is not None:
            if event_id in self._seen:
                return False
            self._seen.append(event_id)
        if message.get("timestamp"):
            self._last_timestamp = message["timestamp"]
        return True

    def _catch_up(self) -> Iterator[dict[str, Any]]:
        """What was published while the connection was down, oldest first."""
        if self._last_timestamp is None:
            return
        prefix = PREFIX.get(self.channel)
        missed = [
            event
            for event in self._c.events.list(since=self._last_timestamp)
            if prefix is None or event.event_type.startswith(prefix)
        ]
        for event in reversed(missed):  # the list is newest first
            message = {
                "type": event.event_type,
                "id": event.id,
                "data": event.payload,
                "timestamp": event.timestamp.isoformat().replace("+00:00", "Z"),
                "correlation_id": event.trace_id,
            }
            if self._new(message):
                yield message
