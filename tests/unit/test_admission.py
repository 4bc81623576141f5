"""Admission by resources, without Ray: placed now, later (once freed or scaled), or never."""

from __future__ import annotations

import pytest

from schedulers.admission import MB, ClusterShape, Placement, actor_options, describe, place, ray_resources

HEAD = {"CPU": 2.0, "memory": 8192 * MB}
WORKER_TYPE = {"CPU": 4.0, "memory": 16384 * MB}


def test_limits_become_rays_resource_request_without_zero_amounts() -> None:
    assert ray_resources({"cpu": 2, "memory": 4096, "gpu": 0}) == {"CPU": 2.0, "memory": 4096 * MB}
    assert ray_resources({}) == {}
    assert ray_resources({}, default_cpu=0.25) == {"CPU": 0.25}
    assert ray_resources({"cpu": 1, "gpu": 1}) == {"CPU": 1.0, "GPU": 1.0}


def test_actor_options_name_rays_keyword_arguments() -> None:
    assert actor_options({"CPU": 2.0, "memory": 1.0 * MB, "GPU": 1.0}) == {
        "num_cpus": 2.0,
        "memory": MB,
        "num_gpus": 1.0,
    }
    assert actor_options({}) == {"num_cpus": 0.0}


@pytest.mark.parametrize(
    ("request_", "available", "totals", "expected"),
    [
        ({"CPU": 1.0}, [HEAD], [HEAD], Placement.now),
        ({"CPU": 2.0}, [{"CPU": 1.0}], [HEAD], Placement.later),  # fits the node once work frees it
        ({"CPU": 4.0}, [HEAD], [HEAD, WORKER_TYPE], Placement.later),  # fits a node type the autoscaler adds
        ({"CPU": 4.0}, [HEAD], [HEAD], Placement.never),
        ({"CPU": 3.0}, [{"CPU": 2.0}, {"CPU": 2.0}], [HEAD, HEAD], Placement.never),  # never split over nodes
        ({"GPU": 1.0}, [HEAD], [HEAD], Placement.never),
        ({"memory": 9000.0 * MB}, [HEAD], [HEAD, WORKER_TYPE], Placement.later),
        ({}, [{}], [{}], Placement.now),
    ],
)
def test_place(request_: dict, available: list, totals: list, expected: Placement) -> None:
    assert place(request_, ClusterShape(available=tuple(available), totals=tuple(totals))) is expected


def test_describe_names_cpu_memory_and_gpu() -> None:
    assert describe({"CPU": 2.0, "memory": 4096 * MB}) == "2 CPU, 4096 MB"
    assert describe({"CPU": 0.5, "GPU": 1.0}) == "0.5 CPU, 0 MB, 1 GPU"
