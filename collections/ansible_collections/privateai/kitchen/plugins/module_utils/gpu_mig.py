# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""GPUs and MIG slices as the NVIDIA GPU operator advertises them: pure Python.

With mig.strategy `mixed` a node's MIG slices are extended resources `nvidia.com/mig-<profile>`
(e.g. nvidia.com/mig-1g.10gb) beside the whole GPUs `nvidia.com/gpu`; with `single` (and
`none`) there is only nvidia.com/gpu. The MIG manager partitions a node after its label
`nvidia.com/mig.config` (a config of the ClusterPolicy's migManager ConfigMap, e.g.
all-1g.10gb) and reports progress in `nvidia.com/mig.config.state`.
"""

from __future__ import annotations

GPU = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
MIG_STATE_LABEL = "nvidia.com/mig.config.state"


def gpu_resource(mig_strategy, mig_profile=None) -> str:
    """The extended resource a model server requests: its MIG profile's slice under `mixed`,
    else a whole GPU (a `single` node advertises its slices as nvidia.com/gpu)."""
    if mig_profile and mig_strategy == "mixed":
        return MIG_PREFIX + mig_profile
    return GPU


def node_mig_configs(gpu) -> dict:
    """{node: MIG config} the GPU nodes are labelled with: kitchen_gpu.mig_config for every node
    of kitchen_gpu.nodes, kitchen_gpu.node_mig_configs where a node differs. None without MIG."""
    gpu = gpu if isinstance(gpu, dict) else {}
    if gpu.get("mig_strategy", "none") == "none":
        return {}
    default = gpu.get("mig_config")
    configs = {node: default for node in gpu.get("nodes") or [] if default}
    configs.update(gpu.get("node_mig_configs") or {})
    return dict(sorted(configs.items()))


def node_label_commands(configs) -> list:
    """The `oc label` commands that do by hand what apply mode does (a GitOps tree does not own
    existing Nodes)."""
    return ["oc label node %s %s=%s --overwrite" % (node, MIG_CONFIG_LABEL, config)
            for node, config in sorted(configs.items())]


def allocatable(node) -> dict:
    """{resource: count} of the GPUs and MIG slices a Node can give pods: status.allocatable
    (what the scheduler uses), status.capacity where a node reports no allocatable."""
    status = (node or {}).get("status") or {}
    source = status.get("allocatable") or status.get("capacity") or {}
    out = {}
    for name, value in source.items():
        if name == GPU or name.startswith(MIG_PREFIX):
            try:
                out[name] = int(str(value))
            except ValueError:
                continue
    return out


def node_gpus(resources, *, mig=False) -> int:
    """For the first Node of a k8s_info result: its allocatable whole GPUs, or with `mig` its
    MIG slices of every profile (0 when absent: not yet partitioned)."""
    if not resources:
        return 0
    counts = allocatable(resources[0])
    if mig:
        return sum(count for name, count in counts.items() if name.startswith(MIG_PREFIX))
    return counts.get(GPU, 0)


def gpu_needs(models, mig_strategy) -> dict:
    """{resource: [count, [model names]]} the model servers request, each by its resource."""
    needs: dict = {}
    for model in models or []:
        resources = model.get("resources") or {}
        count = int(resources.get("gpus", 1))
        if count <= 0:
            continue
        entry = needs.setdefault(gpu_resource(mig_strategy, resources.get("mig_profile")), [0, []])
        entry[0] += count
        entry[1].append(model["name"])
    return needs


def gpu_shortfall(nodes, models, mig_strategy) -> list:
    """What the model servers request that the GPU nodes cannot give, one sentence per resource:
    `nodes` are Node objects, counted by allocatable. Only MIG slices are checked (a whole-GPU
    shortfall is the scheduler's as before)."""
    have: dict = {}
    for node in nodes:
        for name, count in allocatable(node).items():
            have.setdefault(name, {})[node["metadata"]["name"]] = count
    out = []
    for name, (count, names) in sorted(gpu_needs(models, mig_strategy).items()):
        if not name.startswith(MIG_PREFIX):
            continue
        found = have.get(name, {})
        if sum(found.values()) < count:
            out.append("%s: %d requested (%s), %d allocatable (%s)" % (
                name, count, ", ".join(names), sum(found.values()),
                ", ".join("%s: %d" % kv for kv in sorted(found.items())) or "no node has that profile"))
    return out
