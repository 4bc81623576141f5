"""docs/configuration.md, generated from the settings classes of core/settings.py.

Every setting is documented once, by its field's ``description``; this module walks ``Settings`` and its
nested groups and renders one table per group. ``orchestrator docs config`` writes the page and
``orchestrator docs config --check`` (CI, tests/unit/test_docs.py) fails when the committed page differs.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from enum import Enum
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from core.settings import ENV_PREFIX, Settings

DEFAULT_PATH = Path("docs/configuration.md")

# Headings of the groups; a group missing here is titled from its field name.
_TITLES = {
    "api": "HTTP API and Serve",
    "database": "Database",
    "redis": "Redis",
    "rate_limits": "Rate limits",
    "auth": "Authentication",
    "ray": "Ray",
    "agents": "Agents, approvals and routing",
    "files": "Task files",
    "workflows": "Workflow runs",
    "observability": "Tracing",
    "webhooks": "Webhooks",
    "realtime": "Live events and WebSockets",
    "workspaces": "Workspaces and the sandbox",
}

_INTRO = """\
# Configuration

<!-- Generated from core/settings.py by `orchestrator docs config`; do not edit by hand. Change a setting's
     `description` there and run the command again (`orchestrator docs config --check` fails when stale). -->

The platform reads one settings object (`core/settings.py`, pydantic-settings) from the environment and
from an optional `.env` file in the working directory; the environment wins. Every variable has a default
that is safe on a laptop, names are not case-sensitive, lists and mappings are given as JSON, and a value
outside its range stops `orchestrator up` with `invalid settings: …`. The settings are grouped in nested
classes, but every variable keeps a flat name with the prefix `ORCHESTRATOR_`.

Secrets are never shown: `ORCHESTRATOR_JWT_SECRET` and `ORCHESTRATOR_ENCRYPTION_KEY` are generated into
`<data dir>/secrets/` on first start when unset (set them yourself when API replicas run on several
nodes, as every replica must share them).
"""


def env_name(name: str, field: FieldInfo) -> str:
    """The variable a field is read from: ``ORCHESTRATOR_<FIELD>`` unless the field names its own."""
    return str(_extra(field).get("env", f"{ENV_PREFIX}{name.upper()}"))


def settings_groups() -> list[tuple[str, type[BaseSettings], dict[str, FieldInfo]]]:
    """(key, class, own fields) for the top-level settings, then each nested group in declaration order."""
    own: dict[str, FieldInfo] = {}
    groups: list[tuple[str, type[BaseSettings], dict[str, FieldInfo]]] = []
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            groups.append((name, annotation, dict(annotation.model_fields)))
        else:
            own[name] = field
    return [("general", Settings, own), *groups]


def undocumented() -> list[str]:
    """Variables whose field has no description (each must have one)."""
    return [
        env_name(name, field)
        for _, _, fields in settings_groups()
        for name, field in fields.items()
        if not (field.description or "").strip()
    ]


def render() -> str:
    parts = [_INTRO]
    for key, model, fields in settings_groups():
        title = "General" if key == "general" else _TITLES.get(key, key.replace("_", " ").capitalize())
        parts.append(f"\n## {title}\n")
        doc = (model.__doc__ or "").strip()
        if doc and model is not Settings:
            parts.append(f"\n`{model.__name__}`: {_sentence(doc)}\n")
        parts.append("\n| variable | type | default | description |\n|---|---|---|---|\n")
        for name, field in fields.items():
            row = (f"`{env_name(name, field)}`", _type(field), _default(field), (field.description or "").strip())
            parts.append("| " + " | ".join(_cell(text) for text in row) + " |\n")
    return "".join(parts)


def write(path: Path = DEFAULT_PATH) -> bool:
    """Write the page; True when it changed."""
    text = render()
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def stale_diff(path: Path = DEFAULT_PATH) -> str:
    """A unified diff from the committed page to the generated one; empty when it is up to date."""
    current = path.read_text() if path.exists() else ""
    return "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            render().splitlines(keepends=True),
            fromfile=f"{path} (committed)",
            tofile=f"{path} (generated from core/settings.py)",
        )
    )


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def _sentence(text: str) -> str:
    first = " ".join(text.split("\n\n")[0].split())
    return first if first.endswith(".") else f"{first}."


def _type(field: FieldInfo) -> str:
    if "env" in _extra(field):
        return "str"
    annotation, optional = _unwrap_optional(field.annotation)
    if annotation is SecretStr:
        name = "secret"
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        name = " | ".join(f"`{member.value}`" for member in annotation)
    elif annotation is Path:
        name = "path"
    elif isinstance(annotation, type) and get_origin(annotation) is None:
        name = annotation.__name__
    else:
        name = _generic_name(annotation)
    constraints = _constraints(field)
    if optional and annotation is not SecretStr:
        constraints.append("optional")
    return f"{name} ({', '.join(constraints)})" if constraints else name


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _generic_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is None:
        return getattr(annotation, "__name__", str(annotation))
    inner = ", ".join(_generic_name(arg) for arg in args if arg is not Ellipsis)
    return f"{origin.__name__}[{inner}]" if inner else origin.__name__


def _constraints(field: FieldInfo) -> list[str]:
    found: list[str] = []
    symbols = {
        annotated_types.Ge: ("ge", "≥"),
        annotated_types.Gt: ("gt", ">"),
        annotated_types.Le: ("le", "≤"),
        annotated_types.Lt: ("lt", "<"),
    }
    for item in field.metadata:
        for kind, (attribute, symbol) in symbols.items():
            if isinstance(item, kind):
                found.append(f"{symbol} {getattr(item, attribute)}")
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            choices = re.fullmatch(r"\^\(([\w|]+)\)\$", pattern)
            found.append(" | ".join(f"`{c}`" for c in choices.group(1).split("|")) if choices else f"`{pattern}`")
    return found


def _default(field: FieldInfo) -> str:
    extra = _extra(field)
    if extra.get("generated"):
        return "generated"
    if "default_doc" in extra:
        return str(extra["default_doc"])
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "not set"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str) and value == "":
        return "empty"
    if isinstance(value, str | int | float | Path):
        return f"`{value}`"
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
