"""Portable "JSON array contains this value" filters: JSONB containment (GIN-indexed) on Postgres,
json_each on SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists, func, literal_column, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute


def array_contains(column: InstrumentedAttribute[Any], value: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        # JSONB @> (the GIN index serves it); coerced because the column's Python type is generic JSON.
        return type_coerce(column, JSONB).contains([value])
    each = func.json_each(column).table_valued("value")
    return exists(select(literal_column("1")).select_from(each).where(each.c.value == value))
