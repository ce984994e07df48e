# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""What applying a MachineConfig does to its pool: pure Python.

A changed MachineConfig makes the Machine Config Operator render a new config for the pool
of its role and roll it out node by node: each node drains and reboots. So the role says so
before it applies, waits until the pool is Updated on the new config, and names the pool when
it degrades instead.
"""

from __future__ import annotations

ROLE_LABEL = "machineconfiguration.openshift.io/role"


def machineconfig_changes(live, rendered) -> bool:
    """Whether applying `rendered` changes what the nodes run: it does not exist yet, or its
    spec or its role (its pool) differs from the `live` object (None when absent). Labels of
    the toolkit and annotations render no new config."""
    if not live:
        return True
    role = lambda m: ((m.get("metadata") or {}).get("labels") or {}).get(ROLE_LABEL)  # noqa: E731
    return live.get("spec") != rendered.get("spec") or role(live) != role(rendered)


def _conditions(pool) -> dict:
    return {c.get("type"): c for c in ((pool.get("status") or {}).get("conditions") or [])}


def pool_machine_count(pool) -> int:
    return int(((pool or {}).get("status") or {}).get("machineCount") or 0)


def pool_rollout(pool, previous_config=None) -> dict:
    """{'state': 'missing' | 'degraded' | 'updating' | 'updated', 'message'} of a pool as read
    from the cluster. Updated means: conditions Updated=True, Updating=False, Degraded=False,
    the controller has seen the latest spec (observedGeneration), every machine is updated,
    and (when `previous_config` is the rendered config read before the apply) it moved on to a
    new one — right after an apply the pool still reports Updated on the old config."""
    if not pool:
        return {"state": "missing", "message": "no such MachineConfigPool"}
    status, conditions = pool.get("status") or {}, _conditions(pool)
    is_true = lambda kind: (conditions.get(kind) or {}).get("status") == "True"  # noqa: E731
    for kind in ("Degraded", "NodeDegraded", "RenderDegraded"):
        if is_true(kind):
            return {"state": "degraded", "message": conditions[kind].get("message") or conditions[kind].get("reason")
                    or kind}
    machines, updated = pool_machine_count(pool), int(status.get("updatedMachineCount") or 0)
    config = (status.get("configuration") or {}).get("name")
    generation = (pool.get("metadata") or {}).get("generation")
    waiting = []
    if not is_true("Updated") or is_true("Updating"):
        waiting.append("Updated=%s, Updating=%s" % ((conditions.get("Updated") or {}).get("status", "unknown"),
                                                     (conditions.get("Updating") or {}).get("status", "unknown")))
    if generation is not None and status.get("observedGeneration") != generation:
        waiting.append("observedGeneration %s of %s" % (status.get("observedGeneration"), generation))
    if updated != machines:
        waiting.append("%d of %d machines updated" % (updated, machines))
    if previous_config and config == previous_config:
        waiting.append("still on %s" % config)
    if waiting:
        return {"state": "updating", "message": "; ".join(waiting)}
    return {"state": "updated", "message": "%d of %d machines on %s" % (updated, machines, config)}
