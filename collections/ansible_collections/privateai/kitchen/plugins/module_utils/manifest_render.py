# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Naming, serialising and readiness of Kubernetes manifests: pure Python.

Shared by the `render_manifests` action plugin and the Jinja filters of the collection (plugins/filter/manifests.py).
Output is deterministic: the same manifests always give byte-identical files, so a GitOps
repository sees no noise between two renders.
"""

from __future__ import annotations

import yaml

from ansible_collections.privateai.kitchen.plugins.module_utils import gpu_mig

KUSTOMIZE_API_VERSION = "kustomize.config.k8s.io/v1beta1"


class _ManifestDumper(yaml.SafeDumper):
    """Block style; multi-line strings (certificates, scripts) as literal blocks."""


def _represent_str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def _native(value):
    """Plain Python types: Ansible hands templates over as tagged subclasses of str/dict/list."""
    if isinstance(value, dict):
        return {str(k): _native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_native(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def manifest_id(manifest) -> str:
    """'Kind/namespace/name' ('Kind/name' for cluster-scoped objects)."""
    meta = manifest.get("metadata") or {}
    namespace = meta.get("namespace")
    parts = [manifest.get("kind", "?")] + ([namespace] if namespace else []) + [meta.get("name", "?")]
    return "/".join(str(p) for p in parts)


def manifest_filename(manifest) -> str:
    """File name of a rendered manifest. '_' never occurs in kinds or object names, so the
    name is unambiguous: 'resourcequota_kitchen-finance_kitchen-quota.yaml'."""
    meta = manifest.get("metadata") or {}
    parts = [str(manifest.get("kind", "")).lower()]
    if meta.get("namespace"):
        parts.append(str(meta["namespace"]))
    parts.append(str(meta.get("name", "")))
    return "_".join(parts) + ".yaml"


def manifest_yaml(manifest) -> str:
    return yaml.dump(
        _native(manifest),
        Dumper=_ManifestDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
        explicit_start=True,
    )


def kustomization_yaml(resources) -> str:
    """A kustomization listing `resources` in the order given."""
    return yaml.dump(
        {"apiVersion": KUSTOMIZE_API_VERSION, "kind": "Kustomization", "resources": [str(r) for r in resources]},
        Dumper=_ManifestDumper,
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
    )


def with_labels(manifests, labels):
    """Copies of `manifests` carrying `labels` in metadata.labels; a template's own value
    for a key wins."""
    out = []
    for manifest in manifests:
        manifest = dict(manifest)
        meta = dict(manifest.get("metadata") or {})
        merged = dict(labels)
        merged.update(meta.get("labels") or {})
        meta["labels"] = merged
        manifest["metadata"] = meta
        out.append(manifest)
    return out


def manifest_problems(manifests) -> list:
    """Why a list of manifests cannot be delivered: missing identity fields, duplicates."""
    problems = []
    if not isinstance(manifests, list):
        return ["manifests must be a list, got %s" % type(manifests).__name__]
    seen = {}
    for index, manifest in enumerate(manifests):
        if not isinstance(manifest, dict):
            problems.append("manifest %d is not a mapping" % index)
            continue
        meta = manifest.get("metadata")
        missing = [key for key in ("apiVersion", "kind") if not manifest.get(key)]
        if not isinstance(meta, dict) or not meta.get("name"):
            missing.append("metadata.name")
        if missing:
            problems.append("manifest %d (%s) lacks %s" % (index, manifest_id(manifest), ", ".join(missing)))
            continue
        name = manifest_filename(manifest)
        if name in seen:
            problems.append("manifest %d (%s) is a duplicate of manifest %d" % (index, manifest_id(manifest), seen[name]))
        seen[name] = index
    return problems


def _field(resource, dotted):
    node = resource
    for key in str(dotted).split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def resource_ready(resources, wait):
    """Whether the first of `resources` (a k8s_info result list) meets `wait`:
    {condition: {type, status}} or {field: 'status.phase', value: 'Succeeded'}."""
    if not resources:
        return False
    resource = resources[0]
    if "condition" in wait:
        wanted = wait["condition"]
        for condition in _field(resource, "status.conditions") or []:
            if condition.get("type") == wanted.get("type") and \
                    str(condition.get("status")) == str(wanted.get("status", "True")):
                return True
        return False
    return str(_field(resource, wait["field"])) == str(wait["value"])


def resource_settled(resources, wait):
    """Ready, or failed for good (a Job's Failed condition): no use waiting longer."""
    if resource_ready(resources, wait):
        return True
    failed = wait.get("failed_condition")
    return bool(resources and failed) and resource_ready(resources, {"condition": failed})


def resource_state(resources, wait):
    """What a resource shows instead of the state waited for, for an error message."""
    if not resources:
        return "it does not exist"
    resource = resources[0]
    if "condition" in wait:
        conditions = _field(resource, "status.conditions") or []
        if not conditions:
            return "it reports no status conditions"
        return "conditions: " + "; ".join(
            "%s=%s%s" % (c.get("type"), c.get("status"), " (%s)" % c["message"] if c.get("message") else "")
            for c in conditions)
    return "%s is %r" % (wait["field"], _field(resource, wait["field"]))


def status_summary(status) -> str:
    """One line of an object's status for an error message: its state fields and conditions."""
    if not status:
        return "no status"
    parts = ["%s=%s" % (key, status[key]) for key in ("state", "phase", "currentCSV", "installedCSV") if status.get(key)]
    for condition in status.get("conditions") or []:
        text = "%s=%s" % (condition.get("type"), condition.get("status"))
        if condition.get("message") or condition.get("reason"):
            text += " (%s)" % (condition.get("message") or condition.get("reason"))
        parts.append(text)
    return "; ".join(parts) or "no state reported"


def wait_for(manifest, field=None, expected=None, condition=None, status="True"):
    """A manifest_delivery wait entry for a rendered manifest: a status condition
    (condition='Ready') or a field value (field='status.phase', expected='Succeeded').
    (Not `value=`: Jinja's map() takes that keyword for itself.)"""
    meta = manifest.get("metadata") or {}
    spec = {"api_version": manifest["apiVersion"], "kind": manifest["kind"], "name": meta["name"]}
    if meta.get("namespace"):
        spec["namespace"] = meta["namespace"]
    if condition:
        spec["condition"] = {"type": condition, "status": status}
        if manifest["kind"] == "Job" and condition == "Complete":
            # A Job that ran out of retries never completes: stop waiting and say why.
            spec["failed_condition"] = {"type": "Failed", "status": "True"}
    else:
        spec["field"], spec["value"] = field, expected
    return spec


GPU_RESOURCE = gpu_mig.GPU


def gpu_capacity(resources, mig=False) -> int:
    """Allocatable nvidia.com/gpu of the first Node of a k8s_info result, or with `mig` its MIG
    slices of every profile (0 when absent)."""
    return gpu_mig.node_gpus(resources, mig=mig)


def gpu_node_report(results, mig=False) -> list:
    """For the k8s_info results of a node loop: why each node without GPUs (or, with `mig`,
    without MIG slices) has none."""
    report = []
    for result in results:
        name = result.get("item")
        resources = result.get("resources") or []
        if not resources:
            report.append("%s (no such node)" % name)
            continue
        if gpu_capacity(resources, mig) > 0:
            continue
        labels = (resources[0].get("metadata") or {}).get("labels") or {}
        keys = ["nvidia.com/gpu.present", "feature.node.kubernetes.io/pci-10de.present"]
        keys += [gpu_mig.MIG_CONFIG_LABEL, gpu_mig.MIG_STATE_LABEL] if mig else []
        report.append("%s (%s)" % (name, ", ".join("%s=%s" % (k, labels.get(k, "absent")) for k in keys)))
    return report


SYNC_WAVE = "argocd.argoproj.io/sync-wave"


def sync_waves(manifests) -> list:
    """The manifests grouped by their Argo CD sync-wave annotation (0 when absent), in wave
    order: [{'wave': -1, 'manifests': [...]}, {'wave': 0, ...}]. Apply delivery applies and
    waits wave by wave, so it orders objects the way Argo CD does with the rendered files."""
    waves = {}
    for manifest in manifests:
        annotations = (manifest.get("metadata") or {}).get("annotations") or {}
        try:
            wave = int(str(annotations.get(SYNC_WAVE, "0")))
        except ValueError:
            raise ValueError("%s: %s must be an integer, got %r" % (
                manifest_id(manifest), SYNC_WAVE, annotations.get(SYNC_WAVE)))
        waves.setdefault(wave, []).append(manifest)
    return [{"wave": wave, "manifests": waves[wave]} for wave in sorted(waves)]


def waits_in(waits, manifests) -> list:
    """The wait entries that name one of `manifests`."""
    present = {(m.get("kind"), (m.get("metadata") or {}).get("namespace"), (m.get("metadata") or {}).get("name"))
               for m in manifests}
    return [w for w in waits if (w.get("kind"), w.get("namespace"), w.get("name")) in present]


def unready_report(results) -> list:
    """For the k8s_info results of a wait loop: each object that is not ready, what it was
    waited for and what it shows instead."""
    report = []
    for result in results:
        wait = result.get("item") or {}
        resources = result.get("resources") or []
        if resource_ready(resources, wait):
            continue
        target = "/".join(str(p) for p in (wait.get("kind"), wait.get("namespace"), wait.get("name")) if p)
        if "condition" in wait:
            wanted = "condition %s=%s" % (wait["condition"].get("type"), wait["condition"].get("status", "True"))
        else:
            wanted = "%s=%s" % (wait.get("field"), wait.get("value"))
        report.append("%s (waiting for %s; %s)" % (target, wanted, resource_state(resources, wait)))
    return report
