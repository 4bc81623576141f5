"""Statements built once for hot paths: their compiled form is cached, and no per-call construction
(column coercion, cache keys of a new statement) is paid."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, bindparam, insert, inspect


def prepared_insert(model: Any, *attributes: str) -> Insert:
    """`INSERT INTO <model's table> (columns…) VALUES (:attribute…)`, executed with a dict keyed by the
    model's attribute names. A Core insert into the table, not an ORM-enabled one: through a Session,
    `insert(Model)` takes the ORM's bulk-insert path, which costs about as much CPU as a flush."""
    columns = inspect(model).columns
    return insert(model.__table__).values({columns[name].name: bindparam(name) for name in attributes})
