"""List parameters every list uses: `page`/`limit` in, the list envelope (docs/api.md "Pagination") out;
comma-separated filters, task status filters and time-zoned timestamps."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request
from pydantic import BeforeValidator

from core.clock import as_utc
from core.errors import FieldIssue, ValidationFailed
from persistence.repositories.pages import Page
from schedulers.task_lifecycle import ACTIVE, PRIORITY_WORDS, SYNONYMS, TaskStatus
from schedulers.task_lifecycle import parse_status as parse_task_status

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


@dataclass(frozen=True, slots=True)
class PageParams:
    page: int
    limit: int


async def page_params(
    page: int = Query(1, ge=1, le=1_000_000, description="Page number, from 1"),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page, 1–100"),
) -> PageParams:
    return PageParams(page=page, limit=limit)


def paginated(request: Request, key: str, items: list[Any], page: Page[Any]) -> dict[str, Any]:
    """``{key: items, "pagination": {...}, "links": {...}}``; links keep the request's other filters."""
    pages = max(1, math.ceil(page.total / page.limit)) if page.limit else 1

    other = [(k, v) for k, v in request.query_params.multi_items() if k not in ("page", "limit")]

    def link(number: int) -> str:
        return f"{request.url.path}?{urlencode([*other, ('page', number), ('limit', page.limit)])}"

    return {
        key: items,
        "pagination": {
            "page": page.page,
            "limit": page.limit,
            "total": page.total,
            "pages": pages,
            "has_next": page.page < pages,
            "has_prev": page.page > 1,
        },
        "links": {
            "first": link(1),
            "last": link(pages),
            "next": link(page.page + 1) if page.page < pages else None,
            "prev": link(min(page.page - 1, pages)) if page.page > 1 else None,
        },
    }


def words_pattern(words: Iterable[str], *, listed: bool = False, blanks: bool = False) -> str:
    """The pattern of a query parameter that takes one of `words`, in any case, or with `listed` a comma-separated
    list of them (with `blanks`, empty ones too: an empty list, or empty parts, which csv_param skips): built from
    the word list the route parses with, so that the OpenAPI states what the route accepts and a client (or a
    fuzzer) can tell a valid filter from a wrong one."""
    one = r"\s*(" + "|".join(sorted(set(words))) + r")\s*"  # the routes strip each word
    if blanks:
        return rf"(?i)^[\s,]*({one}(,[\s,]*{one})*)?[\s,]*$"
    return f"(?i)^{one}(,{one})*$" if listed else f"(?i)^{one}$"


# `status=a,b` over tasks (task_status_filter) and `priority=a,b` (parse_priority per word).
TASK_STATUS_FILTER = words_pattern([*TaskStatus, *SYNONYMS], listed=True)
PRIORITY_FILTER = words_pattern(PRIORITY_WORDS, listed=True)


def _iso_only(value: object) -> object:
    # Pydantic reads a number, or a string of one, as Unix seconds; the OpenAPI says an ISO 8601 date-time.
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError("an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
# A date-time query parameter: what `format: date-time` says, and nothing else.
QueryTime = Annotated[datetime, BeforeValidator(_iso_only)]


def csv_param(value: str | None) -> list[str]:
    """A comma-separated query parameter as its non-empty parts."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def in_utc(*values: datetime | None) -> tuple[datetime | None, ...]:
    """Query timestamps as UTC instants: one without a zone (or a date alone, its midnight) is taken as UTC,
    one with an offset is converted (docs/api.md "Conventions")."""
    return tuple(None if value is None else as_utc(value) for value in values)


def task_status_filter(value: str | None) -> set[TaskStatus]:
    """`status=a,b` over tasks; the filter word `active` is assigned or in_progress. 422 naming a wrong word."""
    statuses: set[TaskStatus] = set()
    try:
        for word in csv_param(value):
            statuses |= set(ACTIVE) if word.lower() == "active" else {parse_task_status(word)}
    except ValueError as exc:
        raise ValidationFailed("Invalid status filter", details=[FieldIssue("status", str(exc))]) from exc
    return statuses


def refuse_nulls(changes: dict[str, Any], table: Any, column_of: dict[str, str] | None = None) -> None:
    """An update may not clear a field whose column cannot be NULL: 422 naming each such field."""
    columns = column_of or {}
    nulls = [f for f, v in changes.items() if v is None and not table.c[columns.get(f, f)].nullable]
    if nulls:
        raise ValidationFailed("Field cannot be null", details=[FieldIssue(f, "must not be null") for f in nulls])
