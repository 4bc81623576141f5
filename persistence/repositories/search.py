"""Case-insensitive substring search over text columns (the lists' `search` parameter)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_
from sqlalchemy.orm import InstrumentedAttribute


def matches_text(
    search: str, *columns: InstrumentedAttribute[str] | InstrumentedAttribute[str | None]
) -> ColumnElement[bool]:
    """Rows where any of `columns` contains `search`, ignoring case; `%` and `_` match only themselves."""
    escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    return or_(*(func.lower(func.coalesce(column, "")).like(pattern, escape="\\") for column in columns))
