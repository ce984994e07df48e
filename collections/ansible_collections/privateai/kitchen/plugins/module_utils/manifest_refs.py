# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Cross-references between rendered manifests.

A Pod that mounts a Secret nobody creates stays in ContainerCreating; an InferenceService whose
runtime does not exist never becomes Ready; a Subscription to a missing catalog never installs.
None of that shows in schema validation. `dangling()` lists every object a manifest names that
is neither rendered by the toolkit nor declared as pre-existing.
"""

from __future__ import annotations

from dataclasses import dataclass

_POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    # KServe inlines pod fields into these.
    "InferenceService": ("spec", "predictor"),
    "ServingRuntime": ("spec",),
}


@dataclass(frozen=True, order=True)
class Reference:
    kind: str
    namespace: str | None
    name: str
    where: str

    @property
    def target(self) -> str:
        return "/".join(p for p in (self.kind, self.namespace, self.name) if p)


def _get(node, path):
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _pod_references(spec, namespace, where):
    refs = []
    if not isinstance(spec, dict):
        return refs
    for index, volume in enumerate(spec.get("volumes") or []):
        at = "%s.volumes[%d]" % (where, index)
        if _get(volume, ("secret", "secretName")):
            refs.append(Reference("Secret", namespace, volume["secret"]["secretName"], at))
        if _get(volume, ("configMap", "name")):
            refs.append(Reference("ConfigMap", namespace, volume["configMap"]["name"], at))
        if _get(volume, ("persistentVolumeClaim", "claimName")):
            refs.append(Reference("PersistentVolumeClaim", namespace, volume["persistentVolumeClaim"]["claimName"], at))
    for index, secret in enumerate(spec.get("imagePullSecrets") or []):
        refs.append(Reference("Secret", namespace, secret["name"], "%s.imagePullSecrets[%d]" % (where, index)))
    containers = [("containers", c) for c in spec.get("containers") or []]
    containers += [("initContainers", c) for c in spec.get("initContainers") or []]
    if isinstance(spec.get("model"), dict):  # InferenceService predictor.model is a container
        containers.append(("model", spec["model"]))
    for field, container in containers:
        at = "%s.%s[%s]" % (where, field, container.get("name", "model"))
        for env in container.get("env") or []:
            if _get(env, ("valueFrom", "secretKeyRef", "name")):
                refs.append(Reference("Secret", namespace, env["valueFrom"]["secretKeyRef"]["name"], at + ".env"))
            if _get(env, ("valueFrom", "configMapKeyRef", "name")):
                refs.append(Reference("ConfigMap", namespace, env["valueFrom"]["configMapKeyRef"]["name"], at + ".env"))
        for source in container.get("envFrom") or []:
            if _get(source, ("secretRef", "name")):
                refs.append(Reference("Secret", namespace, source["secretRef"]["name"], at + ".envFrom"))
            if _get(source, ("configMapRef", "name")):
                refs.append(Reference("ConfigMap", namespace, source["configMapRef"]["name"], at + ".envFrom"))
    return refs


def references(manifest) -> list[Reference]:
    """Every object `manifest` names by reference."""
    kind = manifest.get("kind")
    namespace = (manifest.get("metadata") or {}).get("namespace")
    refs = []
    if kind in _POD_SPEC_PATHS:
        path = _POD_SPEC_PATHS[kind]
        refs += _pod_references(_get(manifest, path), namespace, ".".join(path))
    if kind == "InferenceService":
        model = _get(manifest, ("spec", "predictor", "model")) or {}
        if model.get("runtime"):
            refs.append(Reference("ServingRuntime", namespace, model["runtime"], "spec.predictor.model.runtime"))
        uri = model.get("storageUri") or ""
        if uri.startswith("pvc://"):
            refs.append(Reference("PersistentVolumeClaim", namespace, uri[len("pvc://"):].split("/")[0],
                                  "spec.predictor.model.storageUri"))
    elif kind == "Subscription":
        spec = manifest.get("spec") or {}
        refs.append(Reference("CatalogSource", spec.get("sourceNamespace"), spec.get("source"), "spec.source"))
    elif kind == "CatalogSource":
        for secret in _get(manifest, ("spec", "secrets")) or []:
            refs.append(Reference("Secret", namespace, secret, "spec.secrets"))
    elif kind == "Proxy" and _get(manifest, ("spec", "trustedCA", "name")):
        refs.append(Reference("ConfigMap", "openshift-config", manifest["spec"]["trustedCA"]["name"], "spec.trustedCA"))
    elif kind == "Image" and _get(manifest, ("spec", "additionalTrustedCA", "name")):
        refs.append(Reference("ConfigMap", "openshift-config", manifest["spec"]["additionalTrustedCA"]["name"],
                              "spec.additionalTrustedCA"))
    elif kind == "Route" and _get(manifest, ("spec", "to", "kind")) == "Service":
        refs.append(Reference("Service", namespace, manifest["spec"]["to"]["name"], "spec.to"))
    return refs


def identity(manifest) -> tuple:
    meta = manifest.get("metadata") or {}
    return (manifest.get("kind"), meta.get("namespace"), meta.get("name"))


def dangling(manifests, preexisting=()) -> list[str]:
    """References to objects that are neither rendered nor pre-existing, as
    'Kind/ns/name (at path) names Secret/ns/x, which is neither rendered nor declared pre-existing'."""
    known = {identity(m) for m in manifests} | {tuple(p) for p in preexisting}
    problems = []
    for manifest in manifests:
        for ref in references(manifest):
            if (ref.kind, ref.namespace, ref.name) not in known:
                problems.append("%s (%s) names %s, which is neither rendered nor declared pre-existing" % (
                    "/".join(p for p in identity(manifest) if p), ref.where, ref.target))
    return sorted(set(problems))


def declared_preexisting(site) -> list[tuple]:
    """Objects a site description declares as created outside the toolkit (its PKI team's TLS
    Secret, the registry pull Secret), as (kind, namespace, name)."""
    out = []
    storage = site.get("kitchen_storage") or {}
    if storage.get("tls_secret"):
        out.append(("Secret", storage.get("namespace", "kitchen-storage"), storage["tls_secret"]))
    registry = site.get("kitchen_registry") or {}
    if registry.get("pull_secret"):
        out.append(("Secret", "openshift-marketplace", registry["pull_secret"]))
    return out
