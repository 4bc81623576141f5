"""Which live events a WebSocket subscription receives (pure)."""

from __future__ import annotations

import pytest

from core.errors import ValidationFailed
from services.subscriptions import Viewer, parse


def _event(kind: str, owner: str | None = "user:u1", **data: object) -> dict:
    return {"type": kind, "id": "e", "data": data, "owner": owner, "timestamp": "t", "task_id": data.get("task_id")}


def test_channels_take_their_own_events_and_events_takes_all() -> None:
    tasks, events = parse("tasks", None), parse("EVENTS", {})
    assert tasks.matches(_event("task.created")) and not tasks.matches(_event("execution.started"))
    assert not tasks.matches(_event("tasks.custom"))
    assert events.matches(_event("deployment.done")) and events.matches(_event("task.created"))


def test_filters_narrow_by_ids_project_type_event_names_and_status() -> None:
    by_ids = parse("executions", {"ids": ["r1", "r2"]})
    assert by_ids.matches(_event("execution.updated", execution_id="r2"))
    assert not by_ids.matches(_event("execution.updated", execution_id="r3"))
    by_project = parse("tasks", {"projectId": "p1", "type": ["BUGFIX", "feature"]})
    assert by_project.matches(_event("task.created", project_id="p1", type="bugfix"))
    assert not by_project.matches(_event("task.created", project_id="p1", type="ops"))
    assert not by_project.matches(_event("task.created", project_id=None, type="bugfix"))
    by_name = parse("tasks", {"events": "task.completed"})
    assert by_name.matches(_event("task.completed")) and not by_name.matches(_event("task.created"))
    by_prefix = parse("events", {"event_types": ["deploy.*"], "status": "ok"})
    assert by_prefix.matches(_event("deploy.done", status="OK")) and not by_prefix.matches(_event("deploy.done"))


@pytest.mark.parametrize(
    ("channel", "filters", "field"),
    [
        ("weather", None, "channel"),
        (None, None, "channel"),
        ("tasks", [], "filters"),
        ("tasks", {"colour": "red"}, "filters.colour"),
        ("tasks", {"events": ["Task.Created"]}, "filters.events"),
        ("tasks", {"ids": [1]}, "filters.ids"),
        ("tasks", {"ids": ["x"] * 101}, "filters.ids"),
    ],
)
def test_bad_subscriptions_name_the_field(channel: object, filters: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        parse(channel, filters)
    assert error.value.details[0].field == field


def test_a_viewer_sees_its_own_and_its_organizations_events_only() -> None:
    viewer = Viewer("u1", frozenset({"o1"}))
    assert viewer.may_see(_event("x.y", "user:u1")) and viewer.may_see(_event("x.y", "organization:o1"))
    assert not viewer.may_see(_event("x.y", "user:u2")) and not viewer.may_see(_event("x.y", "organization:o2"))
    assert not viewer.may_see(_event("system.health", None))
    assert Viewer("admin", is_admin=True).may_see(_event("system.health", None))
