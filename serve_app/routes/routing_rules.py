"""Routing rules (docs/api.md "Approvals, routing rules and events"): which agents each task type goes to. Admins only.

`GET /routing/rules` shows the effective rules (the built-in defaults, overridden per type by stored ones);
`PUT /routing/rules` replaces the stored overrides, and the task router uses them at once.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from schedulers.routing import AgentSelector
from serve_app.deps import Context, CurrentPrincipal
from serve_app.routing import protected_router
from serve_app.schemas.common import RequestModel, ResponseModel
from serve_app.schemas.tasks import TASK_TYPE
from services import routing
from services.ports import RulesChanged
from services.principal import Role

# Scopes: routing is part of the tasks resource (tasks:read, tasks:write).
router = protected_router(prefix="/routing", tags=["routing"], resource="tasks", min_role=Role.admin)


class Selector(RequestModel):
    model_config = ConfigDict(extra="forbid")  # an unknown key is refused, not read as "any agent"

    types: list[str] = Field(default_factory=list, max_length=50, description="agent types (roles), any of")
    capabilities: list[str] = Field(default_factory=list, max_length=50, description="all required")
    tags: list[str] = Field(default_factory=list, max_length=50, description="all required")

    @model_validator(mode="before")
    @classmethod
    def _role_or_type(cls, value: Any) -> Any:
        """An agent's role is its type: `type`, `role` or `roles` (one name or a list) are the agent types."""
        if not isinstance(value, dict):
            return value
        value = dict(value)
        for key in ("type", "role", "roles"):
            if key in value:
                given = value.pop(key)
                value["types"] = [*value.get("types", []), *([given] if isinstance(given, str) else given)]
        return value


class RulesIn(RequestModel):
    rules: dict[str, Selector] = Field(
        description="task type → selector; types not listed use their default",
        # Each key a task type, checked by `_types` below.
        json_schema_extra={"propertyNames": {"pattern": TASK_TYPE}},
    )

    @field_validator("rules")
    @classmethod
    def _types(cls, value: dict[str, Selector]) -> dict[str, Selector]:
        bad = [name for name in value if not re.match(TASK_TYPE, name)]
        if bad:
            raise ValueError(f"task types are lowercase words: {bad}")
        return value


class RulesOut(ResponseModel):
    rules: dict[str, dict[str, list[str]]]
    default: dict[str, list[str]] = Field(description="the selector of a type without a rule: any agent")


def _out(effective: dict[str, AgentSelector]) -> dict[str, Any]:
    return {
        "rules": {name: selector.as_dict() for name, selector in sorted(effective.items())},
        "default": AgentSelector().as_dict(),
    }


@router.get("/rules", response_model=RulesOut)
def get_rules(principal: CurrentPrincipal, context: Context) -> dict:
    with context.db.session() as session:
        return _out(routing.rules(session))


@router.put("/rules", response_model=RulesOut)
def put_rules(body: RulesIn, principal: CurrentPrincipal, context: Context) -> dict:
    """Replace the stored rules (admin); the router applies them at once."""
    with context.db.transaction() as session:
        effective = routing.replace_rules(
            session, {name: selector.model_dump() for name, selector in body.rules.items()}, principal.user_id
        )
    context.actors.router.send(RulesChanged())
    return _out(effective)
