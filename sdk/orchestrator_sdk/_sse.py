"""Server-Sent Events: the parser, and the resume rule of a run's stream.

A run's stream (`GET /executions/{id}/stream`) sends `step`, `log`, `status` and a final `end` event; each
event's id is `<steps seen>:<logs seen>`, and a reconnect with `Last-Event-ID` continues after it. The
`Resume` cursor below also drops anything already delivered, so a consumer sees each step and log once
and a status only when it changed, however often the connection drops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StreamEvent:
    """One event of a stream: `event` (its name), `id`, `data` (JSON-decoded when it is JSON)."""

    event: str
    data: Any
    id: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default) if isinstance(self.data, dict) else default


@dataclass
class SSEParser:
    """Feed lines (without their line ending); a blank line completes an event."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None
    last_id: str | None = None

    def feed(self, line: str) -> StreamEvent | None:
        if line == "":
            if not self._data and not self._event:
                return None
            raw = "\n".join(self._data)
            try:
                data: Any = json.loads(raw) if raw else None
            except ValueError:
                data = raw
            event = StreamEvent(event=self._event or "message", data=data, id=self._id)
            self._event, self._data, self._id = "", [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = self.last_id = value
        return None


def _cursor(event_id: str | None) -> tuple[int, int] | None:
    try:
        steps, logs = (int(part) for part in (event_id or "").split(":", 1))
    except ValueError:
        return None
    return steps, logs


@dataclass
class Resume:
    """Where a run's stream is: what to send as `Last-Event-ID`, and which events are new."""

    last_id: str | None = None
    steps_seen: int = 0
    logs_seen: int = 0
    last_status: Any = None
    ended: bool = False

    def __post_init__(self) -> None:
        cursor = _cursor(self.last_id)
        if cursor:
            self.steps_seen, self.logs_seen = cursor

    def accept(self, event: StreamEvent) -> bool:
        """True when `event` was not delivered before; advances the cursor."""
        cursor = _cursor(event.id)
        if event.event == "step" and cursor:
            if cursor[0] <= self.steps_seen:
                return False
            self.steps_seen = cursor[0]
        elif event.event == "log" and cursor:
            if cursor[1] <= self.logs_seen:
                return False
            self.logs_seen = cursor[1]
        elif event.event == "status":
            if event.data == self.last_status:
                return False
            self.last_status = event.data
        elif event.event == "end":
            if self.ended:
                return False
            self.ended = True
        if event.id is not None:
            self.last_id = event.id
        return True
