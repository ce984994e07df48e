# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jinja filters reading Kubernetes quantities with the grammar the site contract checks."""

from ansible.errors import AnsibleFilterError

from ansible_collections.privateai.kitchen.plugins.module_utils.quantity import QuantityError, to_bytes, to_cores


def _bytes(value, label="size"):
    try:
        return to_bytes(value, label)
    except QuantityError as exc:
        raise AnsibleFilterError(str(exc)) from None


def _cores(value, label="cpu"):
    try:
        return to_cores(value, label)
    except QuantityError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"to_bytes": _bytes, "to_cores": _cores}
