# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jinja filters for Kubernetes manifests (the code lives in the privateai.kitchen collection)."""

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_render import (
    gpu_capacity,
    gpu_node_report,
    kustomization_yaml,
    manifest_filename,
    manifest_id,
    manifest_problems,
    manifest_yaml,
    resource_ready,
    resource_settled,
    resource_state,
    status_summary,
    sync_waves,
    unready_report,
    wait_for,
    waits_in,
    with_labels,
)


class FilterModule:
    def filters(self):
        return {
            "kitchen_manifest_id": manifest_id,
            "kitchen_manifest_filename": manifest_filename,
            "kitchen_manifest_yaml": manifest_yaml,
            "kitchen_kustomization_yaml": kustomization_yaml,
            "kitchen_manifest_problems": manifest_problems,
            "kitchen_resource_ready": resource_ready,
            "kitchen_resource_settled": resource_settled,
            "kitchen_resource_state": resource_state,
            "kitchen_with_labels": with_labels,
            "kitchen_status_summary": status_summary,
            "kitchen_wait_for": wait_for,
            "kitchen_sync_waves": sync_waves,
            "kitchen_waits_in": waits_in,
            "kitchen_unready_report": unready_report,
            "kitchen_gpu_capacity": gpu_capacity,
            "kitchen_gpu_node_report": gpu_node_report,
        }
