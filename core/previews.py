"""A preview of a run's state or a task's arguments for a person deciding an approval: size-limited, and
with secrets masked (values under keys that name a secret, and strings that look like credentials)."""

from __future__ import annotations

import re
from typing import Any

SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|apikey|authorization|credential|private[_-]?key)", re.I
)
SECRET_VALUE = re.compile(r"^(sk-|ao_|ghp_|xox[abp]-|Bearer\s|eyJ[\w-]+\.[\w-]+\.)")
MASK = "•••"
MAX_STRING = 500
MAX_ITEMS = 50
MAX_DEPTH = 6


def preview(value: Any, *, budget: int = 4000) -> tuple[Any, bool]:
    """(the JSON-safe preview, whether anything was cut). Secrets are masked wherever they are."""
    state = {"left": budget, "cut": False}
    return _walk(value, state, 0), state["cut"]


def _walk(value: Any, state: dict[str, Any], depth: int) -> Any:
    if state["left"] <= 0 or depth > MAX_DEPTH:
        state["cut"] = True
        return "…"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS or state["left"] <= 0:
                state["cut"] = True
                break
            name = str(key)
            state["left"] -= len(name)
            out[name] = MASK if SECRET_KEY.search(name) and item not in (None, "") else _walk(item, state, depth + 1)
        return out
    if isinstance(value, list | tuple):
        items = []
        for index, item in enumerate(value):
            if index >= MAX_ITEMS or state["left"] <= 0:
                state["cut"] = True
                break
            items.append(_walk(item, state, depth + 1))
        return items
    if isinstance(value, str):
        if SECRET_VALUE.match(value):
            return MASK
        limit = min(MAX_STRING, max(state["left"], 0))
        state["left"] -= min(len(value), limit)
        if len(value) > limit:
            state["cut"] = True
            return value[:limit] + "…"
        return value
    if value is None or isinstance(value, bool | int | float):
        state["left"] -= 8
        return value
    state["left"] -= 20
    return str(value)[:MAX_STRING]
