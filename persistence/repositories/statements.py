"""Statements built once for hot paths: their compiled form is cached, and no per-call construction
(column coercion, cache keys of a new statement) is paid."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, bindparam, insert


def prepared_insert(model: Any, *columns: str) -> Insert:
    """`INSERT INTO <model> (columns…) VALUES (:column…)`, executed with a dict of those names."""
    return insert(model).values({name: bindparam(name) for name in columns})
