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


def bucket(column: Any, unit: str, dialect: str) -> ColumnElement[str]:
    """The start of the hour or day (`unit`) a timestamp falls in, as ISO text: a GROUP BY key that both
    backends compute in SQL (so a dashboard over a million rows groups in the database)."""
    if dialect == "postgresql":
        # Truncated in UTC, whatever the session's TimeZone; the result is shown in UTC too.
        utc = func.date_trunc(unit, column, "UTC").op("AT TIME ZONE")("UTC")
        return func.to_char(utc, 'YYYY-MM-DD"T"HH24:00:00"Z"')
    pattern = "%Y-%m-%dT%H:00:00Z" if unit == "hour" else "%Y-%m-%dT00:00:00Z"
    return func.strftime(pattern, column)
