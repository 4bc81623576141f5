"""WebSocket subscriptions: which live events a connection receives. Pure, no I/O.

A connection subscribes to channels; each event belongs to the channel named by its first word
(`task.completed` → `tasks`), and `events` carries every event, custom ones included. Filters narrow a
subscription: `ids` (the resource's id, any of), `project_id`, `type` (the resource's own type, e.g. a
task's `bugfix`), `events` (event names or `prefix.*`), `agent_id`, `workflow_id`, `status`.

Whatever the subscription, a connection only ever receives events its caller may see: those owned by the
caller or by one of its organizations (admins: all; events without an owner: admins only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import FieldIssue, ValidationFailed
from core.text import snake_case
from services.events import event_matches, is_event_pattern
from services.scopes import scope_allows

# channel -> the first word of its events' names (None: every event).
CHANNELS: dict[str, str | None] = {
    "tasks": "task",
    "executions": "execution",
    "agents": "agent",
    "approvals": "approval",
    "projects": "project",
    "notifications": "notification",
    "marketplace": "marketplace",
    "system": "system",
    "events": None,
}
# The id fields events carry in `data`; `ids` matches any of them.
_ID_FIELDS = ("id", "task_id", "execution_id", "agent_id", "approval_id", "project_id", "workflow_id")
_EQUALITY_FILTERS = ("project_id", "agent_id", "workflow_id", "status", "type")
MAX_FILTER_VALUES = 100
_CHANNEL_OF_PREFIX = {prefix: channel for channel, prefix in CHANNELS.items() if prefix is not None}


def channel_of(event_type: str) -> str:
    """The channel (and scope resource) an event belongs to: `task.created` → `tasks`; custom → `events`."""
    return _CHANNEL_OF_PREFIX.get(event_type.partition(".")[0], "events")


@dataclass(frozen=True)
class Viewer:
    user_id: str
    organization_ids: frozenset[str] = frozenset()
    is_admin: bool = False
    # A scoped credential (API key, OAuth client): only events of the resources it may read.
    scopes: tuple[str, ...] | None = None

    def may_see(self, message: dict[str, Any]) -> bool:
        if self.scopes is not None and not scope_allows(self.scopes, channel_of(message["type"]), "read"):
            return False
        owner = message.get("owner")
        if self.is_admin:
            return True
        if not owner:
            return False
        owner_type, _, owner_id = owner.partition(":")
        if owner_type == "user":
            return owner_id == self.user_id
        return owner_type == "organization" and owner_id in self.organization_ids


@dataclass(frozen=True)
class Subscription:
    channel: str
    ids: frozenset[str] = frozenset()
    events: tuple[str, ...] = ()
    equals: tuple[tuple[str, frozenset[str]], ...] = field(default=())

    def matches(self, message: dict[str, Any]) -> bool:
        event_type: str = message["type"]
        prefix = CHANNELS[self.channel]
        if prefix is not None and event_type.partition(".")[0] != prefix:
            return False
        if self.events and not event_matches(self.events, event_type):
            return False
        data = message.get("data") or {}
        if (
            self.ids
            and not ({str(data[key]) for key in _ID_FIELDS if data.get(key) is not None} | {message.get("task_id")})
            & self.ids
        ):
            return False
        return all(data.get(key) is not None and str(data[key]).lower() in values for key, values in self.equals)

    def describe(self) -> dict[str, Any]:
        filters: dict[str, Any] = {key: sorted(values) for key, values in self.equals}
        if self.ids:
            filters["ids"] = sorted(self.ids)
        if self.events:
            filters["events"] = list(self.events)
        return {"channel": self.channel, "filters": filters}


def parse(channel: Any, filters: Any) -> Subscription:
    """A subscription from a client's `subscribe` message; every problem raises ValidationFailed naming it."""
    if not isinstance(channel, str) or channel.lower() not in CHANNELS:
        raise ValidationFailed("Unknown channel", details=[FieldIssue("channel", f"one of {', '.join(CHANNELS)}")])
    if filters is None:
        filters = {}
    if not isinstance(filters, dict):
        raise ValidationFailed("Invalid filters", details=[FieldIssue("filters", "must be an object")])
    values = {snake_case(str(key)): value for key, value in filters.items()}
    known = {"ids", "events", "event_types", *_EQUALITY_FILTERS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValidationFailed(
            "Unknown filter", details=[FieldIssue(f"filters.{name}", f"not one of {sorted(known)}") for name in unknown]
        )
    events = _strings(values, "events") + _strings(values, "event_types")
    for pattern in events:
        if not is_event_pattern(pattern):
            raise ValidationFailed(
                "Invalid event name",
                details=[FieldIssue("filters.events", f"{pattern!r}: dotted lowercase words, or prefix.*")],
            )
    equals = tuple(
        (key, frozenset(value.lower() for value in _strings(values, key))) for key in _EQUALITY_FILTERS if key in values
    )
    return Subscription(channel.lower(), frozenset(_strings(values, "ids")), tuple(events), equals)


def _strings(values: dict[str, Any], key: str) -> list[str]:
    value = values.get(key)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_FILTER_VALUES or not all(isinstance(item, str) and 0 < len(item) <= 200 for item in items):
        raise ValidationFailed(
            "Invalid filter",
            details=[FieldIssue(f"filters.{key}", f"a string or a list of at most {MAX_FILTER_VALUES} strings")],
        )
    return items
