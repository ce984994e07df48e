# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jinja filters of the bundle role (the code lives in the privateai.kitchen collection)."""

from ansible.errors import AnsibleFilterError

from ansible_collections.privateai.kitchen.plugins.module_utils.files import KitchenError
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_report import (
    bundle_adapters,
    bundle_image,
    bundle_model_files,
    bundle_models,
    import_lines,
    plan_lines,
)


def _bundle_image(bundle_dir, name):
    try:
        return bundle_image(bundle_dir, name)
    except (KitchenError, ValueError) as exc:
        raise AnsibleFilterError("bundle_image: %s" % exc) from None


def _bundle_model_files(bundle_dir, name):
    try:
        return bundle_model_files(bundle_dir, name)
    except (KitchenError, ValueError) as exc:
        raise AnsibleFilterError("bundle_model_files: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {
            "bundle_models": bundle_models,
            "bundle_adapters": bundle_adapters,
            "bundle_plan_lines": plan_lines,
            "bundle_import_lines": import_lines,
            "bundle_image": _bundle_image,
            "bundle_model_files": _bundle_model_files,
        }
