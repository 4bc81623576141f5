"""Templates in node configurations: `{{ state.customer.name }}` is replaced by that value of the run's
state. A placeholder is a path (`state.a.b`, `state.items[0]`), evaluated by the safe expression language,
so a template can read the state and nothing else. A string that is exactly one placeholder takes the
value itself (a number stays a number); inside longer text it is rendered as text (JSON for mappings).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from runtime.expressions import ExpressionError, compile_expression, evaluate

PLACEHOLDER = re.compile(r"\{\{\s*(.+?)\s*\}\}")


def render(value: Any, state: Mapping[str, Any]) -> Any:
    """`value` (a string, or mappings and lists of them) with every placeholder filled from `state`."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole:
            return evaluate(whole.group(1), state)
        return PLACEHOLDER.sub(lambda match: _text(evaluate(match.group(1), state)), value)
    if isinstance(value, Mapping):
        return {key: render(item, state) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, state) for item in value]
    return value


def check(value: Any, where: str) -> list[tuple[str, str]]:
    """(field, problem) for every placeholder that would not compile."""
    problems: list[tuple[str, str]] = []
    if isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            try:
                compile_expression(match.group(1))
            except ExpressionError as exc:
                problems.append((where, f"template '{match.group(0)}': {exc}"))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            problems += check(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += check(item, f"{where}[{index}]")
    return problems


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str) if isinstance(value, Mapping | list) else str(value)
