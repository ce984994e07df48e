# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jinja filters of the olm_operator role (the code lives in module_utils/olm_installplans.py)."""

from ansible_collections.privateai.kitchen.plugins.module_utils import olm_installplans
from ansible_collections.privateai.kitchen.plugins.module_utils.olm_installplans import installplan_verdict

# Modules that are also in-cluster scripts (standard library only), by the name a role asks for.
INCLUSTER_SCRIPTS = {"installplan_approver": olm_installplans}


def incluster_script(name) -> str:
    """The source of an in-cluster script, for the ConfigMap its Job mounts: the file itself,
    so the Job runs the very rule the playbook applies."""
    with open(INCLUSTER_SCRIPTS[name].__file__, encoding="utf-8") as handle:
        return handle.read()


class FilterModule:
    def filters(self):
        return {"installplan_verdict": installplan_verdict, "incluster_script": incluster_script}
