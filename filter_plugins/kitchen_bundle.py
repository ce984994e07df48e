# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jinja filters of the bundle role (the code lives in the privateai.kitchen collection)."""

from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_report import (
    bundle_adapters,
    bundle_models,
    import_lines,
    plan_lines,
)


class FilterModule:
    def filters(self):
        return {
            "kitchen_bundle_models": bundle_models,
            "kitchen_bundle_adapters": bundle_adapters,
            "kitchen_bundle_plan_lines": plan_lines,
            "kitchen_bundle_import_lines": import_lines,
        }
