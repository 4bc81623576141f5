"""The platform's singletons ask for the head node by Ray's own name for its resource, and for no CPU, so that
they fit the `num-cpus: 0` head (actors/placement.py; proven on a live multi-node cluster in tests/multinode)."""

from __future__ import annotations

from ray._common.constants import HEAD_NODE_RESOURCE_NAME

from actors.placement import HEAD_NODE_RESOURCE, system_actor_options


def test_system_actors_ask_for_the_head_nodes_resource_and_no_cpu() -> None:
    assert HEAD_NODE_RESOURCE == HEAD_NODE_RESOURCE_NAME
    options = system_actor_options()
    assert options["num_cpus"] == 0
    assert 0 < options["resources"][HEAD_NODE_RESOURCE_NAME] < 1
