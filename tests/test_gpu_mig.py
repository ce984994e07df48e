"""MIG slices as the GPU operator advertises them, as tables against the pure functions of
module_utils/gpu_mig.py (which resource a model server requests, how nodes are labelled, what
the nodes can give)."""

import pytest

from ansible_collections.privateai.kitchen.plugins.module_utils import gpu_mig

NODES = ["gpu-1", "gpu-2"]


def node(name, allocatable=None, capacity=None, labels=None):
    status = {k: v for k, v in (("allocatable", allocatable), ("capacity", capacity)) if v is not None}
    return {"metadata": {"name": name, "labels": labels or {}}, "status": status}


@pytest.mark.parametrize("strategy,profile,expected", [
    ("none", None, "nvidia.com/gpu"),
    ("single", None, "nvidia.com/gpu"),
    ("single", "1g.10gb", "nvidia.com/gpu"),  # refused at preflight; single advertises nvidia.com/gpu
    ("mixed", None, "nvidia.com/gpu"),  # a whole GPU of a node left out of MIG
    ("mixed", "1g.10gb", "nvidia.com/mig-1g.10gb"),
    ("mixed", "3g.40gb", "nvidia.com/mig-3g.40gb"),
])
def test_the_resource_a_model_server_requests(strategy, profile, expected):
    assert gpu_mig.gpu_resource(strategy, profile) == expected


@pytest.mark.parametrize("gpu,expected", [
    ({"nodes": NODES}, {}),
    ({"mig_strategy": "none", "mig_config": "all-1g.10gb", "nodes": NODES}, {}),
    ({"mig_strategy": "single", "nodes": NODES}, {}),
    ({"mig_strategy": "mixed", "mig_config": "all-1g.10gb", "nodes": NODES},
     {"gpu-1": "all-1g.10gb", "gpu-2": "all-1g.10gb"}),
    ({"mig_strategy": "mixed", "mig_config": "all-1g.10gb", "node_mig_configs": {"gpu-2": "all-disabled"},
      "nodes": NODES}, {"gpu-1": "all-1g.10gb", "gpu-2": "all-disabled"}),
    ({"mig_strategy": "single", "node_mig_configs": {"gpu-1": "all-3g.40gb"}, "nodes": NODES}, {"gpu-1": "all-3g.40gb"}),
])
def test_the_mig_config_each_node_is_labelled_with(gpu, expected):
    assert gpu_mig.node_mig_configs(gpu) == expected


def test_render_mode_prints_the_label_commands():
    assert gpu_mig.node_label_commands({"gpu-2": "all-disabled", "gpu-1": "all-1g.10gb"}) == [
        "oc label node gpu-1 nvidia.com/mig.config=all-1g.10gb --overwrite",
        "oc label node gpu-2 nvidia.com/mig.config=all-disabled --overwrite"]


@pytest.mark.parametrize("found,mig,expected", [
    (node("n", allocatable={"cpu": "64", "nvidia.com/gpu": "2"}, capacity={"nvidia.com/gpu": "4"}), False, 2),
    (node("n", capacity={"nvidia.com/gpu": "4"}), False, 4),  # no allocatable reported: capacity
    (node("n", allocatable={"nvidia.com/mig-1g.10gb": "7"}), False, 0),
    (node("n", allocatable={"nvidia.com/mig-1g.10gb": "4", "nvidia.com/mig-2g.20gb": "1"}), True, 5),
    (node("n", allocatable={"nvidia.com/gpu": "1"}), True, 0),  # not partitioned yet
    (node("n", allocatable={"nvidia.com/gpu": "bad"}), False, 0),
])
def test_what_a_node_can_give(found, mig, expected):
    assert gpu_mig.node_gpus([found], mig=mig) == expected
    assert gpu_mig.node_gpus([], mig=mig) == 0


MODELS = [{"name": "a", "resources": {"mig_profile": "1g.10gb"}},
          {"name": "b", "resources": {"mig_profile": "1g.10gb", "gpus": 1}},
          {"name": "c", "resources": {"gpus": 2}},
          {"name": "d", "resources": {"gpus": 0, "mig_profile": "3g.40gb"}}]


@pytest.mark.parametrize("nodes,strategy,expected", [
    ([node("gpu-1", allocatable={"nvidia.com/mig-1g.10gb": "7"})], "mixed", []),
    ([node("gpu-1", allocatable={"nvidia.com/mig-1g.10gb": "1"}), node("gpu-2", allocatable={"nvidia.com/gpu": "1"})],
     "mixed", ["nvidia.com/mig-1g.10gb: 2 requested (a, b), 1 allocatable (gpu-1: 1)"]),
    ([node("gpu-1", allocatable={"nvidia.com/mig-3g.40gb": "2"})], "mixed",
     ["nvidia.com/mig-1g.10gb: 2 requested (a, b), 0 allocatable (no node has that profile)"]),
    ([node("gpu-1", allocatable={"nvidia.com/gpu": "1"})], "single", []),  # whole GPUs: the scheduler's
])
def test_the_mig_slices_the_models_request_against_what_the_nodes_can_give(nodes, strategy, expected):
    assert gpu_mig.gpu_shortfall(nodes, MODELS, strategy) == expected
