# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Strict validation of rendered Kubernetes manifests, without a cluster.

- Core kinds (v1, apps/v1, networking.k8s.io/v1, rbac...): the strict JSON schemas that the
  kubernetes-validate package ships for each Kubernetes minor version.
- Custom resources: the openAPIV3Schema of the real upstream CRD, made strict: an object
  that declares its properties accepts no other field unless the CRD says
  x-kubernetes-preserve-unknown-fields. A typo in a field name is an error, as it would be
  for `kubectl apply --validate=strict`.
"""

from __future__ import annotations

import copy
import glob
import os
from dataclasses import dataclass

_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

# What the API server accepts in metadata of any object (the fields a manifest may set).
OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
}


@dataclass(frozen=True)
class ManifestError:
    source: str
    message: str

    def __str__(self) -> str:
        return "%s: %s" % (self.source, self.message)


def strict_schema(schema):
    """A copy of a CRD structural schema in which unknown fields are errors."""
    schema = copy.deepcopy(schema)
    _tighten(schema)
    return schema


def _tighten(node):
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    for key in ("allOf", "anyOf", "oneOf", "not"):
        if key in node and node[key] is None:  # some generated CRDs carry `anyOf: null`
            del node[key]
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    # Structural fields only: allOf/anyOf/oneOf/not hold value constraints whose `properties`
    # name a few fields to test (Route: tls.termination), not the whole object.
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            for sub in value.values():
                _tighten(sub)
        elif key in ("items", "additionalProperties"):
            _tighten(value)


class CrdCatalog:
    """The CRDs of a folder, by apiVersion and kind."""

    def __init__(self, crd_dir: str):
        import yaml

        self.crd_dir = crd_dir
        self._schemas = {}
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the KServe CRDs are megabytes
        for path in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
            with open(path, "r", encoding="utf-8") as handle:
                for doc in yaml.load_all(handle, Loader=loader):
                    if not doc or doc.get("kind") != "CustomResourceDefinition":
                        continue
                    group = doc["spec"]["group"]
                    kind = doc["spec"]["names"]["kind"]
                    for version in doc["spec"]["versions"]:
                        if not version.get("served", True):
                            continue
                        schema = (version.get("schema") or {}).get("openAPIV3Schema")
                        if schema:
                            self._schemas[("%s/%s" % (group, version["name"]), kind)] = (schema, os.path.basename(path))

    def __contains__(self, key) -> bool:
        return key in self._schemas

    def kinds(self):
        return sorted(self._schemas)

    def validator(self, api_version: str, kind: str):
        import jsonschema

        schema, _ = self._schemas[(api_version, kind)]
        strict = strict_schema(schema)
        strict.setdefault("properties", {})["metadata"] = OBJECT_META
        strict["properties"]["apiVersion"] = {"const": api_version}
        strict["properties"]["kind"] = {"const": kind}
        strict["required"] = sorted(set(strict.get("required", [])) | {"apiVersion", "kind", "metadata"})
        return jsonschema.Draft7Validator(strict)


def _path(error) -> str:
    text = ""
    for part in error.absolute_path:
        text += "[%d]" % part if isinstance(part, int) else ("." if text else "") + str(part)
    return text or "<root>"


def is_core(api_version: str) -> bool:
    group = api_version.split("/")[0] if "/" in api_version else ""
    return group == "" or group.endswith(".k8s.io") or group in (
        "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io")


def validate_manifest(manifest: dict, kubernetes_version: str, crds: CrdCatalog | None, source: str = ""):
    """Every problem of one manifest (an empty list when it is valid)."""
    api_version, kind = manifest.get("apiVersion", ""), manifest.get("kind", "")
    label = source or "%s/%s" % (kind, (manifest.get("metadata") or {}).get("name", "?"))
    if is_core(api_version):
        import kubernetes_validate

        try:
            kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [ManifestError(label, "%s: %s (Kubernetes %s schema)" % (_path(exc), exc.message, kubernetes_version))]
        except kubernetes_validate.SchemaNotFoundError as exc:
            return [ManifestError(label, exc.message)]
        return []
    if crds is None:
        return []  # the caller reports that CRD validation was skipped
    if (api_version, kind) not in crds:
        return [ManifestError(label, "no CRD in %s serves %s %s" % (crds.crd_dir, api_version, kind))]
    return [
        ManifestError(label, "%s: %s" % (_path(error), error.message))
        for error in sorted(crds.validator(api_version, kind).iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))
    ]


def load_tree(root: str):
    """(relative path, manifest) of every manifest below `root`, kustomization files aside."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)):
        if os.path.basename(path) == "kustomization.yaml":
            continue
        with open(path, "r", encoding="utf-8") as handle:
            out.extend((os.path.relpath(path, root), doc) for doc in yaml.load_all(handle, Loader=loader) if doc)
    return out


def validate_tree(root: str, kubernetes_version: str, crds: CrdCatalog | None):
    """Validate every manifest below `root` (kustomization files aside).
    Returns (number of manifests, list of ManifestError)."""
    manifests = load_tree(root)
    errors = []
    for source, doc in manifests:
        errors.extend(validate_manifest(doc, kubernetes_version, crds, source))
    return len(manifests), errors
