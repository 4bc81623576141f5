"""Import an object named by `package.module:attribute` (agent handlers, LangGraph graphs, python nodes)."""

from __future__ import annotations

import importlib
import re
from typing import Any

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def check_allowed(path: str, allowed_modules: tuple[str, ...]) -> None:
    """ValueError unless `path` is well formed and its module is one of `allowed_modules` or inside one.

    Import paths in agents' configurations name code that runs on the cluster, so only modules the
    operator listed (ORCHESTRATOR_AGENT_CODE_MODULES) may be named: never `os`, `subprocess`, ….
    """
    if not isinstance(path, str) or not _IMPORT_PATH.match(path):
        raise ValueError(f"expected 'package.module:attribute', got {path!r}")
    module_name = path.partition(":")[0]
    if not any(module_name == allowed or module_name.startswith(f"{allowed}.") for allowed in allowed_modules):
        listed = ", ".join(allowed_modules) or "none"
        raise ValueError(
            f"module '{module_name}' is not allowed: agents may name code only in the modules listed in "
            f"ORCHESTRATOR_AGENT_CODE_MODULES (now: {listed})"
        )


def import_object(path: str, allowed_modules: tuple[str, ...] | None = None) -> Any:
    """The object at `module:attr` (attr may be dotted). ValueError for a malformed path or a module
    outside `allowed_modules` (when given), ImportError or AttributeError when it does not exist."""
    if allowed_modules is not None:
        check_allowed(path, allowed_modules)
    if not isinstance(path, str) or not _IMPORT_PATH.match(path):
        raise ValueError(f"expected 'package.module:attribute', got {path!r}")
    module_name, _, attribute = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise AttributeError(f"{path}: module '{module_name}' has no attribute '{attribute}'") from exc
    return obj
