# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jinja filters for Kubernetes manifests (the code lives in the privateai.kitchen collection)."""

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_jobs import (
    named_by_content,
    replaced_jobs,
)
from ansible_collections.privateai.kitchen.plugins.module_utils.storage_access import tenant_s3_policy
from ansible_collections.privateai.kitchen.plugins.module_utils.gpu_mig import (
    gpu_resource,
    gpu_shortfall,
    node_label_commands,
    node_mig_configs,
)
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
            "manifest_id": manifest_id,
            "manifest_filename": manifest_filename,
            "manifest_yaml": manifest_yaml,
            "kustomization_yaml": kustomization_yaml,
            "manifest_problems": manifest_problems,
            "resource_ready": resource_ready,
            "resource_settled": resource_settled,
            "resource_state": resource_state,
            "with_labels": with_labels,
            "status_summary": status_summary,
            "wait_for": wait_for,
            "sync_waves": sync_waves,
            "waits_in": waits_in,
            "unready_report": unready_report,
            "gpu_capacity": gpu_capacity,
            "gpu_node_report": gpu_node_report,
            "gpu_resource": gpu_resource,
            "gpu_shortfall": gpu_shortfall,
            "node_mig_configs": node_mig_configs,
            "node_label_commands": node_label_commands,
            "named_by_content": named_by_content,
            "replaced_jobs": replaced_jobs,
            "tenant_s3_policy": tenant_s3_policy,
        }
