"""Framework adapters: how an agent's framework runtime is loaded inside its actor.

Adapters are discovered through the `orchestrator.frameworks` entry-point group, so another package adds
one by declaring `[project.entry-points."orchestrator.frameworks"] name = "pkg.module:Adapter"`.
Built in: `native`, `langgraph`, `pydantic-ai`, `openai-agents`, `autogen`, `smolagents`, `crewai` and
`camelai` (each but `native` behind the extra of its name; docs/frameworks.md). Deploying an agent whose
framework has no usable adapter answers FRAMEWORK_UNAVAILABLE naming what to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol

from core.errors import FrameworkUnavailable
from core.imports import check_allowed

ENTRY_POINT_GROUP = "orchestrator.frameworks"


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """What an adapter sees of an agent: the durable record's runtime-relevant fields."""

    id: str
    name: str
    framework: str
    mode: str
    version: str
    model: str | None = None
    provider: str | None = None
    configuration: dict[str, Any] = field(default_factory=dict)
    # Modules the agent's configuration may name (handlers, graphs): ORCHESTRATOR_AGENT_CODE_MODULES.
    code_modules: tuple[str, ...] = ()
    # Private hosts or networks the agent's LLM provider may be on: ORCHESTRATOR_HTTP_ALLOWED_HOSTS.
    http_allowed: tuple[str, ...] = ()
    # The provider when `configuration.llm` names none: the tenant's settings (`/settings` openai_base_url,
    # llm_model, openai_api_key), else the platform's (ORCHESTRATOR_LLM_*). {base_url, model, api_key}.
    default_llm: dict[str, Any] = field(default_factory=dict, repr=False)


# Configuration keys that name code by import path, checked against the allowed modules. `agent` is either a
# path or a declarative agent whose `tools` are paths; top-level `tools` are a declarative agent's too.
CODE_KEYS = ("handler", "graph", "agent")


def check_code_paths(configuration: dict[str, Any], code_modules: tuple[str, ...]) -> None:
    """ValueError naming the key if the configuration names code outside the allowed modules."""
    named: list[tuple[str, Any]] = []
    for key in CODE_KEYS:
        value = configuration.get(key)
        if isinstance(value, dict) and key == "agent":
            named += [(f"agent.tools[{i}]", tool) for i, tool in enumerate(value.get("tools") or [])]
        elif value is not None:
            named.append((key, value))
    if isinstance(configuration.get("tools"), list) and not isinstance(configuration.get("agent"), str):
        named += [(f"tools[{i}]", tool) for i, tool in enumerate(configuration["tools"])]
    # The members of a declarative AutoGen team or CrewAI crew.
    for group in ("team", "crew"):
        members = configuration.get(group)
        members = members.get("agents") if isinstance(members, dict) else None
        for i, member in enumerate(members if isinstance(members, list) else []):
            tools = member.get("tools") if isinstance(member, dict) else None
            named += [(f"{group}.agents[{i}].tools[{j}]", tool) for j, tool in enumerate(tools or [])]
    for key, path in named:
        try:
            check_allowed(path, code_modules)
        except ValueError as exc:
            raise ValueError(f"configuration.{key}: {exc}") from exc


class AgentRuntime(Protocol):
    def invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Run one unit of work (a task's input) and return its result."""

    def close(self) -> None: ...


class FrameworkAdapter(Protocol):
    name: str
    # Modules the adapter imports at load time, and the pip extra that installs them.
    requires: tuple[str, ...]
    extra: str | None

    def load(self, spec: AgentSpec) -> AgentRuntime:
        """Build the runtime from the agent's configuration; ValueError for a configuration it refuses."""


# Frameworks an agent may name that have no adapter here, and why (docs/frameworks.md "Frameworks without an
# adapter"): FRAMEWORK_UNAVAILABLE says what would make each available.
WITHOUT_ADAPTER = {
    "metagpt": (
        "MetaGPT's last release (0.8.2) needs Python < 3.12 and pins typer==0.9.0, openai~=1.39 and "
        "pandas==2.1.1, which cannot be installed beside the platform; a MetaGPT release that installs beside "
        "it would make an adapter possible. Until then run it as an external agent (mode 'external') in an "
        "environment of its own"
    ),
    "babyagi": (
        "babyagi (0.1.4) is an experimental prototype, a Flask registry of functions, and pins "
        "sqlalchemy<2.0 where the platform needs SQLAlchemy 2; run it as an external agent (mode 'external') "
        "in an environment of its own"
    ),
    "agentverse": (
        "AgentVerse's last release (0.1.8.1) pins pydantic==1.10.7, openai==0.27.8 and fastapi==0.95.1, which "
        "cannot be installed beside the platform; run it as an external agent (mode 'external') in an "
        "environment of its own"
    ),
    "autogpt": (
        "AutoGPT is a platform with a server of its own, not a library to call (the 'autogpt' package on PyPI "
        "is another project); connect it as an external agent (mode 'external')"
    ),
    "openagents": (
        "OpenAgents agents join an OpenAgents network through its own server and protocols rather than run "
        "one task at a call; connect one as an external agent (mode 'external')"
    ),
    "miniagi": (
        "MiniAGI has no installable package (it is a script to run); run it as an external agent (mode 'external')"
    ),
    "orca": (
        "Orca is a family of models, not an agent framework (the 'orca' package on PyPI is an unrelated "
        "library); serve the model on an OpenAI-compatible server and name it in configuration.llm of an "
        "agent of any framework with an adapter"
    ),
}


@cache
def _registered() -> dict[str, Any]:
    return {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}


def available_frameworks() -> list[str]:
    """Frameworks that can be deployed on this installation."""
    usable = []
    for name in sorted(_registered()):
        try:
            adapter_for(name)
        except FrameworkUnavailable:
            continue
        usable.append(name)
    return usable


def adapter_for(framework: str) -> FrameworkAdapter:
    """The adapter of `framework`, or FrameworkUnavailable saying what is missing."""
    entry = _registered().get(framework)
    if entry is None:
        why = WITHOUT_ADAPTER.get(framework, f"this release ships no '{framework}' extra")
        raise FrameworkUnavailable(
            f"No adapter is installed for framework '{framework}': {why}. A package that registers an adapter "
            f"for it under the '{ENTRY_POINT_GROUP}' entry-point group would make it available "
            f"(installed: {', '.join(sorted(_registered()))})"
        )
    adapter: FrameworkAdapter = entry.load()()
    missing = [module for module in adapter.requires if importlib.util.find_spec(module) is None]
    if missing:
        hint = f"pip install 'orchestrator[{adapter.extra}]'" if adapter.extra else f"install {', '.join(missing)}"
        alone = getattr(adapter, "conflicts_with", ())
        if alone:
            hint += (
                f", in an environment without the {' and '.join(alone)} extras, whose dependencies it conflicts with"
            )
        raise FrameworkUnavailable(
            f"Framework '{framework}' needs the '{adapter.extra or missing[0]}' extra, which is not installed ({hint})"
        )
    return adapter


def load_node_runtime(
    framework: str, *, execution_id: str, node_id: str, configuration: dict[str, Any], code_modules: tuple[str, ...]
) -> AgentRuntime:
    """A framework's runtime for one node of a workflow run (`runtime.nodes.FrameworkLoader`)."""
    spec = AgentSpec(
        id=execution_id,
        name=node_id,
        framework=framework,
        mode="hosted",
        version="workflow",
        configuration=configuration,
        code_modules=code_modules,
    )
    return adapter_for(framework).load(spec)
