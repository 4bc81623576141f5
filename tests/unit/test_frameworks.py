"""Framework adapters: discovery through entry points, FRAMEWORK_UNAVAILABLE, and real runtimes."""

from __future__ import annotations

import pytest

from core.errors import FrameworkUnavailable
from frameworks import (
    WITHOUT_ADAPTER,
    AgentSpec,
    adapter_for,
    available_frameworks,
    check_code_paths,
    load_node_runtime,
)
from frameworks.langgraph import LangGraphAdapter
from runtime.nodes import NODE_TYPES, NodeContext, NodeFailed


def _spec(framework: str, **configuration) -> AgentSpec:
    return AgentSpec(
        id="a1",
        name="Bot",
        framework=framework,
        mode="hosted",
        version="1.0.0",
        configuration=configuration,
        code_modules=("tests.fixtures",),
    )


def test_builtin_adapters_are_discovered_through_the_entry_point_group() -> None:
    assert {"native", "langgraph"} <= set(available_frameworks())
    assert adapter_for("langgraph").name == "langgraph"


def test_a_framework_without_adapter_is_unavailable_naming_the_entry_point_group() -> None:
    with pytest.raises(FrameworkUnavailable) as caught:
        adapter_for("metagpt")
    assert "orchestrator.frameworks" in str(caught.value) and caught.value.code == "FRAMEWORK_UNAVAILABLE"


@pytest.mark.parametrize("framework", sorted(WITHOUT_ADAPTER))
def test_a_framework_without_adapter_says_why_and_what_would_make_it_available(framework: str) -> None:
    with pytest.raises(FrameworkUnavailable) as caught:
        adapter_for(framework)
    message = str(caught.value)
    assert WITHOUT_ADAPTER[framework] in message and "would make it available" in message
    assert "mode 'external'" in message or "configuration.llm" in message


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LangGraphAdapter, "requires", ("langgraph_not_installed_here",))
    with pytest.raises(FrameworkUnavailable, match=r"orchestrator\[langgraph\]"):
        adapter_for("langgraph")


def test_langgraph_runs_a_real_graph_with_a_fake_chat_model() -> None:
    spec = _spec("langgraph", graph="tests.fixtures.graphs:build_support_graph", responses=["Reset it here."])
    runtime = adapter_for("langgraph").load(spec)
    state = runtime.invoke({"question": "How do I reset my password?", "messages": []})
    assert state["messages"] == [
        {"type": "human", "content": "How do I reset my password?"},
        {"type": "ai", "content": "Reset it here."},
    ]


@pytest.mark.parametrize(
    ("configuration", "message"),
    [
        ({}, "configuration.graph is required"),
        ({"graph": "tests.fixtures.graphs:NOT_A_GRAPH"}, "not a LangGraph"),
        ({"graph": "no such path"}, "package.module:attribute"),
    ],
)
def test_langgraph_refuses_a_configuration_that_names_no_graph(configuration: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        adapter_for("langgraph").load(_spec("langgraph", **configuration))


def test_native_runs_its_handler_sync_or_async() -> None:
    runtime = adapter_for("native").load(_spec("native", handler="tests.fixtures.handlers:double"))
    assert runtime.invoke({"value": 21}) == {"value": 42}
    runtime = adapter_for("native").load(_spec("native", handler="tests.fixtures.handlers:double_later"))
    assert runtime.invoke({"value": 2}) == {"value": 4}


@pytest.mark.parametrize("path", ["subprocess:run", "os:system", "tests:fixtures", "tests.fixturesx.mod:f"])
def test_configurations_may_name_code_only_in_the_allowed_modules(path: str) -> None:
    with pytest.raises(ValueError, match="ORCHESTRATOR_AGENT_CODE_MODULES"):
        adapter_for("native").load(_spec("native", handler=path))
    with pytest.raises(ValueError, match=r"configuration\.graph: module"):
        check_code_paths({"graph": path}, ("tests.fixtures",))
    with pytest.raises(ValueError, match="now: none"):
        check_code_paths({"handler": "tests.fixtures.handlers:double"}, ())
    check_code_paths({"handler": "tests.fixtures.handlers:double", "other": "os:system"}, ("tests.fixtures",))


def _node_context(**given) -> NodeContext:
    return NodeContext(
        execution_id="e1",
        node_id="chat",
        attempt=1,
        idempotency_key="e1:chat:1",
        correlation_id=None,
        code_modules=("tests.fixtures",),
        **given,
    )


def test_a_langgraph_node_runs_through_the_framework_loader_the_run_is_given() -> None:
    node = NODE_TYPES["langgraph"]
    config = {"graph": "tests.fixtures.graphs:build_support_graph"}
    result = node.run(_node_context(load_framework=load_node_runtime), {"question": "Hi?", "messages": []}, config)
    assert result.updates["messages"][-1] == {"type": "ai", "content": "How can I help?"}

    with pytest.raises(NodeFailed, match="runs no agent framework"):  # the engine has no adapter of its own
        node.run(_node_context(), {"question": "Hi?", "messages": []}, config)
