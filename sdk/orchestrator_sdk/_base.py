"""The base of every model: pydantic v2, tolerant of new fields, readable as a mapping, shown as HTML."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

# Fields shown first in a notebook table, when the model has them.
_PREFERRED = (
    "id",
    "name",
    "title",
    "status",
    "type",
    "priority",
    "progress",
    "current_step",
    "agent_id",
    "workflow_id",
    "task_id",
    "error",
    "created_at",
    "updated_at",
)
_MAX_CELL = 120


class ApiModel(BaseModel):
    """A platform object. `obj.field` and `obj["field"]` both work (the API guide's examples use mappings);
    `to_dict()` gives the JSON form."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())

    def __getitem__(self, key: str) -> Any:
        data = self.to_dict()
        return data[key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.to_dict()

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def keys(self) -> Iterator[str]:
        return iter(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def _repr_html_(self) -> str:
        return html_table(self.to_dict(), title=type(self).__name__)


def _cell(value: Any) -> str:
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else "" if value is None else str(value)
    if len(text) > _MAX_CELL:
        text = text[: _MAX_CELL - 1] + "…"
    return html.escape(text)


def html_table(data: dict[str, Any], title: str = "", fields: list[str] | None = None) -> str:
    """A two-column table of `data`: preferred fields first, then the other scalars."""
    keys = fields or [k for k in _PREFERRED if k in data] + [
        k for k, v in data.items() if k not in _PREFERRED and not isinstance(v, dict | list)
    ]
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{_cell(data.get(k))}</td></tr>" for k in keys
    )
    caption = f"<caption style='text-align:left'><b>{html.escape(title)}</b></caption>" if title else ""
    return f"<table>{caption}{rows}</table>"


def rows_table(items: list[dict[str, Any]], fields: list[str]) -> str:
    """One row per item: for pages of a list."""
    head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
    body = "".join("<tr>" + "".join(f"<td>{_cell(item.get(f))}</td>" for f in fields) + "</tr>" for item in items)
    return f"<table><tr>{head}</tr>{body}</table>"
