# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""The site rules JSON Schema cannot express: unique names, references between lists, what a
platform needs beyond the schema's required keys. Each rule reports its variable path."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ansible_collections.privateai.kitchen.plugins.module_utils.storage_access import tenant_credential_problems


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    message: str

    def __str__(self) -> str:
        return "%s: %s" % (self.path, self.message)


def did_you_mean(word, candidates) -> str:
    matches = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return " (did you mean '%s'?)" % matches[0] if matches else ""


# Every named list of the site and the key(s) that name its items: a second item with the same
# name would silently replace the first in the objects the roles render.
NAMED_LISTS = (
    ("kitchen_registry.catalogs", ("name",)),
    ("kitchen_registry.mirrors", ("source",)),
    ("kitchen_tenants", ("name",)),
    ("kitchen_models", ("name",)),
    ("kitchen_adapters", ("name",)),
    ("kitchen_bundle.images", ("name",)),
    ("kitchen_bundle.models", ("name",)),
    ("kitchen_bundle.adapters", ("name", "version")),
    ("kitchen_bundle.eval_sets", ("name",)),
    ("kitchen_bundle.ca_certificates", ("name",)),
)


def get_path(site: dict, dotted: str):
    """site['a']['b'] for 'a.b'; None where a step is missing or not a mapping."""
    node = site
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def duplicates(items, path: str, keys) -> tuple[dict, list[Violation]]:
    """({name: first index}, a violation per later item with the same name). `keys` name an
    item together, e.g. ('name', 'version') for adapter versions."""
    seen, out = {}, []
    for index, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in keys):
            continue  # reported by the schema
        name = tuple(item[k] for k in keys)
        if name in seen:
            where = "%s[%d].%s" % (path, index, keys[0])
            shown = " ".join(map(repr, name)) if len(keys) > 1 else repr(name[0])
            out.append(Violation(where, "%s is a duplicate of %s[%d]%s" % (
                shown, path, seen[name], "" if len(keys) > 1 else "." + keys[0])))
        else:
            seen[name] = index
    return {k[0] if len(keys) == 1 else k: v for k, v in seen.items()}, out


def violations(site: dict) -> list[Violation]:
    """Every violation of the rules the schema cannot express (names, references, needs)."""
    out: list[Violation] = []
    names = {}
    for path, keys in NAMED_LISTS:
        items = get_path(site, path)
        # None: not a list (reported by the schema), so no cascade of reference errors.
        found, dups = duplicates(items, path, keys)
        names[path] = found if isinstance(items, list) else None
        out.extend(dups)
    models, tenants = names["kitchen_models"], names["kitchen_tenants"]

    def must_reference(path, value, known, what):
        if known is not None and isinstance(value, str) and value not in known:
            out.append(Violation(path, "%r is not %s%s" % (
                value, what, did_you_mean(value, known) or " (known: %s)" % (", ".join(sorted(known)) or "none"))))

    for index, model in enumerate(site.get("kitchen_models") or []):
        if isinstance(model, dict):
            must_reference("kitchen_models[%d].tenant" % index, model.get("tenant"), tenants,
                           "a tenant in kitchen_tenants")
    for index, adapter in enumerate(site.get("kitchen_adapters") or []):
        if not isinstance(adapter, dict):
            continue
        must_reference("kitchen_adapters[%d].base_model" % index, adapter.get("base_model"), models,
                       "a model in kitchen_models")
        versions = adapter.get("versions")
        serving = adapter.get("serving_version")
        if isinstance(versions, list) and isinstance(serving, str) and serving not in versions:
            out.append(Violation("kitchen_adapters[%d].serving_version" % index,
                                 "%r is not one of its versions: %s" % (serving, ", ".join(map(str, versions)))))
        # The phase 3 gate reads <eval set name>/<file> from the bundle: the set must be carried.
        eval_set, bundle = adapter.get("eval_set"), site.get("kitchen_bundle")
        carried = names["kitchen_bundle.eval_sets"]
        if carried is None and isinstance(bundle, dict) and "eval_sets" not in bundle:
            carried = {}
        if isinstance(eval_set, str):
            must_reference("kitchen_adapters[%d].eval_set" % index, eval_set.partition("/")[0], carried,
                           "an eval set in kitchen_bundle.eval_sets")

    out.extend(_bundle_references(site, models, must_reference))
    out.extend(_openshift_needs(site))
    out.extend(mig_rules(site))

    storage = site.get("kitchen_storage")
    if isinstance(storage, dict) and storage.get("type") == "external" and not storage.get("endpoint"):
        out.append(Violation("kitchen_storage.endpoint", "required key is missing (kitchen_storage.type is external)"))
    return out


def _bundle_references(site: dict, models, must_reference) -> list[Violation]:
    """What the bundle carries must be something the site serves: a model of
    kitchen_models, a version of a kitchen_adapters flavour."""
    out: list[Violation] = []
    bundle = site.get("kitchen_bundle")
    if not isinstance(bundle, dict):
        return out
    for index, model in enumerate(bundle.get("models") or []):
        if isinstance(model, dict):
            must_reference("kitchen_bundle.models[%d].name" % index, model.get("name"), models,
                           "a model in kitchen_models")
    flavours = {a.get("name"): a for a in site.get("kitchen_adapters") or [] if isinstance(a, dict)}
    for index, adapter in enumerate(bundle.get("adapters") or []):
        if not isinstance(adapter, dict):
            continue
        name, version = adapter.get("name"), adapter.get("version")
        must_reference("kitchen_bundle.adapters[%d].name" % index, name, set(flavours),
                       "a flavour in kitchen_adapters")
        versions = (flavours.get(name) or {}).get("versions")
        if isinstance(versions, list) and isinstance(version, str) and version not in versions:
            out.append(Violation("kitchen_bundle.adapters[%d].version" % index, "%r is not one of %s's versions: %s"
                                 % (version, name, ", ".join(map(str, versions)))))
    return out

def mig_rules(site: dict) -> list[Violation]:
    """MIG: a slice is requested by profile only under mig_strategy mixed (single advertises
    slices as nvidia.com/gpu), one per server, and every GPU node has a config to be
    partitioned into."""
    gpu = site.get("kitchen_gpu") if isinstance(site.get("kitchen_gpu"), dict) else {}
    strategy = gpu.get("mig_strategy", "none")
    nodes = [n for n in gpu.get("nodes") or [] if isinstance(n, str)]
    per_node = gpu.get("node_mig_configs") if isinstance(gpu.get("node_mig_configs"), dict) else {}
    out = []
    for index, model in enumerate(site.get("kitchen_models") or []):
        resources = model.get("resources") if isinstance(model, dict) else None
        if not isinstance(resources, dict) or not resources.get("mig_profile"):
            continue
        where = "kitchen_models[%d].resources" % index
        if strategy != "mixed":
            out.append(Violation(where + ".mig_profile", "%r needs kitchen_gpu.mig_strategy mixed (it is %r; "
                                 "only mixed advertises nvidia.com/mig-<profile>)" % (resources["mig_profile"], strategy)))
        gpus = resources.get("gpus", 1)
        if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus != 1:
            out.append(Violation(where + ".gpus", "%d MIG slices of %s: a CUDA process uses one MIG device "
                                 "(ask for a larger profile)" % (gpus, resources["mig_profile"])))
    if strategy == "none":
        for key in ("mig_config", "node_mig_configs"):
            if gpu.get(key):
                out.append(Violation("kitchen_gpu.%s" % key, "needs kitchen_gpu.mig_strategy single or mixed "
                                     "(it is none: the GPU operator's MIG manager is disabled)"))
        return out
    for node in sorted(per_node):
        if node not in nodes:
            out.append(Violation("kitchen_gpu.node_mig_configs.%s" % node, "is not a node of kitchen_gpu.nodes%s" % (
                did_you_mean(node, nodes) or " (known: %s)" % (", ".join(nodes) or "none"))))
    unpartitioned = [n for n in nodes if n not in per_node]
    if strategy == "mixed" and not gpu.get("mig_config") and (unpartitioned or not nodes):
        out.append(Violation("kitchen_gpu.mig_config", "required key is missing (kitchen_gpu.mig_strategy is mixed: "
                             "the MIG manager partitions a node after its nvidia.com/mig.config label; no config for %s)"
                             % (", ".join(unpartitioned) or "the GPU nodes")))
    return out


# What the OpenShift roles need beyond the schema's required keys.
_OPENSHIFT_IMAGES = {
    "vllm": "phase 2 serves the base model with it",
    "model_loader": "phase 2 fills the model PVC from S3 with it",
    "smoke_test": "phase 2 tastes the model from inside the cluster with it",
}

def _openshift_needs(site: dict) -> list[Violation]:
    if site.get("kitchen_platform") != "openshift":
        return []
    out = []
    images = site.get("kitchen_images")
    storage = site.get("kitchen_storage") if isinstance(site.get("kitchen_storage"), dict) else {}
    needed_images = dict(_OPENSHIFT_IMAGES)
    if storage.get("type") == "minio":
        needed_images["minio"] = "kitchen_storage.type minio deploys it"
        needed_images["minio_client"] = "kitchen_storage.type minio creates each tenant's S3 user and policy with its mc"
    if not isinstance(images, dict):
        if images is None:
            out.append(Violation("kitchen_images", "required site variable is missing (needed when kitchen_platform is openshift)"))
    else:
        for key, why in sorted(needed_images.items()):
            if key not in images:
                out.append(Violation("kitchen_images.%s" % key, "required key is missing (%s)" % why))
    if storage:
        # Every tenant gets a data connection with these keys; a deployed MinIO serves TLS.
        keys = ("access_key", "secret_key") + (("tls_secret",) if storage.get("type") == "minio" else ())
        for key in keys:
            if key not in storage:
                out.append(Violation("kitchen_storage.%s" % key, "required key is missing (%s)" % (
                    "kitchen_storage.type minio on openshift" if key == "tls_secret"
                    else "the platform writes models and adapters with it")))
        tenants = [t.get("name") for t in site.get("kitchen_tenants") or [] if isinstance(t, dict)]
        out += [Violation(path, message) for path, message in tenant_credential_problems(
            storage_type=storage.get("type"), tenants=tenants, credentials=storage.get("tenant_credentials"))]
    registry = site.get("kitchen_registry") if isinstance(site.get("kitchen_registry"), dict) else {}
    catalogs = {c.get("name") for c in registry.get("catalogs") or [] if isinstance(c, dict)}
    operators = site.get("kitchen_operators")
    operators = operators if isinstance(operators, dict) else {}
    needed = ["openshift_ai"]
    gpu = site.get("kitchen_gpu")
    if not isinstance(gpu, dict) or gpu.get("enabled", True) is not False:
        needed += ["nfd", "gpu"]
    for key in needed:
        if key not in operators:
            out.append(Violation("kitchen_operators.%s" % key, "required key is missing (needed when kitchen_platform is openshift)"))
    for key, operator in sorted(operators.items()):
        catalog = operator.get("catalog") if isinstance(operator, dict) else None
        if isinstance(catalog, str) and catalog not in catalogs:
            out.append(Violation("kitchen_operators.%s.catalog" % key, "%r is not a catalog in kitchen_registry.catalogs%s" % (
                catalog, did_you_mean(catalog, catalogs) or " (known: %s)" % (", ".join(sorted(catalogs)) or "none"))))
    return out
