"""Statements built once for hot paths: their compiled form is cached, and no per-call construction
(column coercion, cache keys of a new statement) is paid."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Insert, bindparam, insert, inspect


def prepared_insert(model: Any, *attributes: str) -> Insert:
    """`INSERT INTO <model's table> (columns…) VALUES (:attribute…)`, executed with a dict keyed by the
    model's attribute names. A Core insert into the table, not an ORM-enabled one: through a Session,
    `insert(Model)` takes the ORM's bulk-insert path, which costs about as much CPU as a flush."""
    columns = inspect(model).columns
    return insert(model.__table__).values({columns[name].name: bindparam(name) for name in attributes})


def column_defaults(model: Any, *supplied: str) -> Callable[[], dict[str, Any]]:
    """A maker of the model's defaults for a prepared insert's other attributes (those not `supplied`): the
    column's scalar default, a fresh value of a callable one (`dict`, `list`), else None. Built from the
    model, so a Core insert fills exactly what the ORM would."""
    scalars: dict[str, Any] = {}
    makers: dict[str, Callable[[], Any]] = {}
    for attribute in inspect(model).column_attrs:
        if attribute.key in supplied:
            continue
        default = attribute.columns[0].default
        if default is None:
            scalars[attribute.key] = None
        elif default.is_scalar:
            scalars[attribute.key] = default.arg
        elif default.is_callable:
            makers[attribute.key] = lambda arg=default.arg: arg(None)
        else:  # a SQL expression or sequence: the database fills it
            raise ValueError(f"{model.__name__}.{attribute.key}: a server-side default has no Python value")

    def make() -> dict[str, Any]:
        return {**scalars, **{key: maker() for key, maker in makers.items()}}

    make.attributes = (*scalars, *makers)  # type: ignore[attr-defined]
    return make
