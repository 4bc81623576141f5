"""Import an object named by `package.module:attribute` (agent handlers, LangGraph graphs, python nodes)."""

from __future__ import annotations

import importlib
import re
from typing import Any

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def import_object(path: str) -> Any:
    """The object at `module:attr` (attr may be dotted). ValueError for a malformed path, ImportError or
    AttributeError when it does not exist, each naming the path."""
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
