# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jinja filters of the selinux_labelling role (the code lives in module_utils/machineconfig_rollout.py)."""

from ansible_collections.privateai.kitchen.plugins.module_utils.machineconfig_rollout import (
    machineconfig_changes,
    pool_machine_count,
    pool_rollout,
)


class FilterModule:
    def filters(self):
        return {"machineconfig_changes": machineconfig_changes, "pool_machine_count": pool_machine_count,
                "pool_rollout": pool_rollout}
