"""The workflow runtime's pure parts: the safe expression language, templates, graph validation and the
walk, and the SSRF check of http/llm nodes."""

from __future__ import annotations

import socket

import pytest

from runtime import templates
from runtime.expressions import ExpressionError, evaluate
from runtime.graph import Graph, validate
from runtime.nodes import NodeFailed, check_url

STATE = {"amount": 150, "customer": {"tier": "gold", "tags": ["a", "b"]}, "name": "Ada"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("state.amount > 100 and state.customer.tier in ['gold', 'platinum']", True),
        ("state['customer']['tags'][1]", "b"),
        ("state.missing is None", True),
        ("len(state.customer.tags) + 1", 3),
        ("upper(state.name) if state.amount else 'none'", "ADA"),
        ("not state.amount % 50", True),
        ("{'x': state.amount // 100}", {"x": 1}),
    ],
)
def test_expressions_read_the_state(source, expected) -> None:
    assert evaluate(source, STATE) == expected


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('true')",
        "state.__class__",
        "().__class__.__bases__",
        "open('/etc/passwd')",
        "state.amount ** 1000000",
        "[x for x in state]",
        "lambda: 1",
        "'a' * 10000000",
        "getattr(state, 'x')",
        "",
        "state.amount >",
    ],
)
def test_anything_else_is_refused(source) -> None:
    with pytest.raises(ExpressionError):
        evaluate(source, STATE)


def test_templates_fill_values_and_keep_types() -> None:
    config = {
        "prompt": "Hello {{ state.name }}, {{ state.customer }}",
        "items": "{{ state.customer.tags }}",
        "n": 3,
        "nested": ["{{ state.amount }}"],
    }
    rendered = templates.render(config, STATE)
    assert rendered["prompt"] == 'Hello Ada, {"tier": "gold", "tags": ["a", "b"]}'
    assert rendered["items"] == ["a", "b"] and rendered["n"] == 3 and rendered["nested"] == [150]
    assert templates.check({"url": "{{ state.__class__ }}"}, "config") == [
        ("config.url", "template '{{ state.__class__ }}': '__class__' is not allowed")
    ]


def _graph(nodes, edges):
    return {"nodes": nodes, "edges": edges}


def test_validation_names_each_problem() -> None:
    problems = dict(
        validate(
            _graph(
                [
                    {"id": "a", "type": "input"},
                    {"id": "b", "type": "map", "config": {"function": "m:f", "max_parallel": 0}},
                    {"id": "c", "type": "http", "config": {"url": "ftp://x"}},
                    {"id": "d", "type": "approval", "config": {"timeout_s": -1}},
                ],
                [{"source": "a", "target": "b", "branch": "maybe"}],
            )
        )
    )
    assert problems == {
        "workflow_data.nodes[1].config.items": "a list, or a template naming one",
        "workflow_data.nodes[1].config.max_parallel": "an integer from 1 to 256",
        "workflow_data.nodes[2].config.url": "http or https",
        "workflow_data.nodes[3].config.timeout_s": "a number of seconds > 0",
        "workflow_data.edges[0].branch": "true or false",
    }
    assert validate({"nodes": []}) == [("workflow_data.nodes", "at least one node is required")]
    loop = _graph(
        [{"id": "a", "type": "input"}, {"id": "b", "type": "output"}],
        [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
    )
    assert any("no start node" in message for _, message in validate(loop))


def test_the_walk_follows_conditions_and_branches() -> None:
    graph = Graph.parse(
        _graph(
            [
                {"id": "in", "type": "input"},
                {"id": "check", "type": "condition", "config": {"expression": "state.x"}},
                {"id": "yes", "type": "output"},
                {"id": "no", "type": "output"},
                {"id": "big", "type": "output"},
            ],
            [
                {"source": "in", "target": "check"},
                {"source": "check", "target": "yes", "branch": "true"},
                {"source": "check", "target": "no", "branch": "false"},
                {"source": "in", "target": "big", "condition": "state.amount > 100"},
            ],
        )
    )
    assert graph.starts() == ["in"]
    assert graph.successors("in", {"amount": 5}) == ["check"]
    assert graph.successors("in", {"amount": 500}) == ["check", "big"]
    assert graph.successors("check", {}, "true") == ["yes"] and graph.successors("check", {}, "false") == ["no"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://192.168.1.1/",
        "http://100.64.1.1/",
        "http://[fd00::1]/",
        "file:///etc/passwd",
    ],
)
def test_private_addresses_are_refused(url) -> None:
    with pytest.raises(NodeFailed):
        check_url(url, ())


def test_allow_listed_hosts_and_networks_pass() -> None:
    check_url("http://127.0.0.1:8000/v1", ("127.0.0.1",))
    check_url("http://10.1.2.3/", ("10.0.0.0/8",))
    with pytest.raises(NodeFailed):
        check_url("http://10.1.2.3/", ("192.168.0.0/16",))


def test_a_checked_url_is_pinned_to_the_address_it_was_checked_at(monkeypatch) -> None:
    answers = {"svc.test": "127.0.0.9", "v6.test": "::1"}

    def getaddrinfo(host, port, *args, **kwargs):
        address = answers.get(host, host)
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    plain = check_url("http://user:pw@svc.test:8080/hook?x=1", ("127.0.0.0/8",))
    assert (plain.url, plain.headers, plain.extensions) == (
        "http://user:pw@127.0.0.9:8080/hook?x=1",
        {"Host": "svc.test:8080"},
        {},
    )
    tls = check_url("https://svc.test/v1", ("127.0.0.0/8",))
    assert (tls.url, tls.headers, tls.extensions) == (
        "https://127.0.0.9/v1",
        {"Host": "svc.test"},
        {"sni_hostname": "svc.test"},
    )  # the certificate's name
    assert check_url("http://v6.test/", ("::1/128",)).url == "http://[::1]/"
    # Allow-listed by name, or already an address: requested as given.
    assert check_url("http://svc.test/", ("svc.test",)).url == "http://svc.test/"
    assert check_url("http://127.0.0.9/", ("127.0.0.0/8",)).headers == {}
