"""Portable SQL over timestamps: seconds between two columns, and the hour of day (UTC)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, cast, extract, func


def seconds_between(start: Any, end: Any, dialect: str) -> ColumnElement[float]:
    if dialect == "postgresql":
        return extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def hour_of_day(column: Any, dialect: str) -> ColumnElement[int]:
    if dialect == "postgresql":
        return cast(extract("hour", column), Integer)
    return cast(func.strftime("%H", column), Integer)
