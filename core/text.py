"""Spelling of names that clients send in either case (query parameters, filters, error locations)."""

from __future__ import annotations

import re

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake_case(name: str) -> str:
    """`sortBy` -> `sort_by`; snake_case and all-caps names are left as they are (lower-cased)."""
    return _CAMEL_BOUNDARY.sub(r"_\1", name).lower() if not name.isupper() else name.lower()
