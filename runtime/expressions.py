"""A safe expression language for edge conditions and `condition` nodes — never `eval`.

An expression is parsed with Python's grammar and then walked here, allowing only: literals, `state`
(with `.name` and `["key"]`/`[index]` access into mappings and lists; a missing key is `None`),
comparisons (`== != < <= > >= in not in is is not`), `and`/`or`/`not`, `+ - * / // %` on numbers (and `+`
on strings and lists), list/tuple/dict literals, conditional expressions, and the functions `len`, `str`,
`int`, `float`, `bool`, `abs`, `min`, `max`, `lower`, `upper`. No attribute of a Python object, no import,
no call of anything else, no exponentiation; size limits keep an expression from exhausting memory.

    evaluate("state.amount > 100 and state.customer.tier in ['gold', 'platinum']", state)
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

MAX_LENGTH = 2000
MAX_NODES = 300
MAX_RESULT = 100_000  # characters or items a string/list operation may produce


class ExpressionError(ValueError):
    pass


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "abs": abs,
    "min": min,
    "max": max,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
}


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> ast.expr:
    """Parse and check an expression once; raises ExpressionError naming what is not allowed."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("an expression is required")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"more than {MAX_NODES} parts")
    for node in nodes:
        _check(node)
    return tree.body


def _check(node: ast.AST) -> None:
    allowed = (
        ast.Expression,
        ast.Constant,
        ast.Name,
        ast.Load,
        ast.Attribute,
        ast.Subscript,
        ast.Compare,
        ast.BoolOp,
        ast.And,
        ast.Or,
        ast.UnaryOp,
        ast.Not,
        ast.USub,
        ast.UAdd,
        ast.BinOp,
        ast.List,
        ast.Tuple,
        ast.Dict,
        ast.IfExp,
        ast.Call,
        *_COMPARE,
        *_BINARY,
    )
    if not isinstance(node, allowed):
        raise ExpressionError(f"'{type(node).__name__}' is not allowed")
    if isinstance(node, ast.Name) and node.id not in ("state", "True", "False", "None") and node.id not in _FUNCTIONS:
        raise ExpressionError(f"unknown name '{node.id}' (use state.<field>)")
    if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
        raise ExpressionError(f"'{node.attr}' is not allowed")
    if isinstance(node, ast.Call) and (
        not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords
    ):
        raise ExpressionError(f"only these functions may be called: {', '.join(sorted(_FUNCTIONS))}")


def evaluate(source: str, state: Mapping[str, Any]) -> Any:
    try:
        return _eval(compile_expression(source), state)
    except ExpressionError:
        raise
    except Exception as exc:  # a type error between values of the state, a division by zero …
        raise ExpressionError(f"{type(exc).__name__}: {exc}") from None


def truthy(source: str, state: Mapping[str, Any]) -> bool:
    return bool(evaluate(source, state))


def _eval(node: ast.expr, state: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return {"state": state, "True": True, "False": False, "None": None}.get(node.id, _FUNCTIONS.get(node.id))
    if isinstance(node, ast.Attribute):
        return _get(_eval(node.value, state), node.attr)
    if isinstance(node, ast.Subscript):
        return _get(_eval(node.value, state), _eval(node.slice, state))
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = _eval(value, state)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = _eval(value, state)
            if result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, state)
        if isinstance(node.op, ast.Not):
            return not operand
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.Compare):
        left = _eval(node.left, state)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, state)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BinOp):
        return _bounded(_BINARY[type(node.op)](_eval(node.left, state), _eval(node.right, state)))
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(item, state) for item in node.elts]
    if isinstance(node, ast.Dict):
        return {_eval(k, state): _eval(v, state) for k, v in zip(node.keys, node.values, strict=True) if k is not None}
    if isinstance(node, ast.IfExp):
        return _eval(node.body, state) if _eval(node.test, state) else _eval(node.orelse, state)
    if isinstance(node, ast.Call):
        return _bounded(_FUNCTIONS[node.func.id](*[_eval(arg, state) for arg in node.args]))  # type: ignore[attr-defined]
    raise ExpressionError(f"'{type(node).__name__}' is not allowed")


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, Mapping):
        return container.get(key)
    if isinstance(container, list | tuple | str) and isinstance(key, int):
        return container[key] if -len(container) <= key < len(container) else None
    return None


def _bounded(value: Any) -> Any:
    if isinstance(value, str | list | tuple) and len(value) > MAX_RESULT:
        raise ExpressionError(f"a result longer than {MAX_RESULT} is not allowed")
    return value
