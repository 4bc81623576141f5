"""The pagination helper every list uses: `page`/`limit` parameters in, API.md's envelope out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Query, Request

from persistence.repositories.pages import Page

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
