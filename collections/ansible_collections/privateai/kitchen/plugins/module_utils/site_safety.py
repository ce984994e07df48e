# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Site rules of trust: every image from the internal registry, TLS wherever data or
credentials flow, verification never switched off, and no key that the toolkit would accept
but not honour (a site must not believe it has a gateway it does not have)."""

from __future__ import annotations

from ansible_collections.privateai.kitchen.plugins.module_utils.site_rules import Violation

# Keys that switch TLS verification off when false (or on when true, for the negated ones).
VERIFY_KEYS = ("validate_certs", "verify_ssl", "verify_tls", "tls_verify")
INSECURE_KEYS = ("insecure", "insecure_skip_tls_verify", "skip_tls_verify")

# Site keys the schema describes for a later phase: refused until a role reads them.
NOT_SUPPORTED = {
    "kitchen_gateway": "phase 4",
    "kitchen_observability": "phase 4",
}

# Keys only one platform's roles read, with what reads them: set on the other platform they
# would be accepted and silently ignored. [] is every item of a list.
PLATFORM_ONLY = {
    "podman": {
        "kitchen_host": "the single host",
        "kitchen_models[].serving.chat_format": "llama.cpp on the single host; vLLM reads the model's chat template",
    },
    "openshift": {
        "kitchen_cluster": "the cluster connection",
        "kitchen_operators": "OLM on the cluster",
        "kitchen_openshift_ai": "OpenShift AI",
        "kitchen_gpu": "the cluster's GPU nodes; a single host has kitchen_host.gpu",
        "kitchen_storage.namespace": "the object store deployed in the cluster",
        "kitchen_storage.tls_secret": "the object store deployed in the cluster",
        "kitchen_storage.size": "the object store deployed in the cluster",
        "kitchen_models[].storage_class": "the model PVC",
        "kitchen_models[].serving.gpu_memory_utilization": "vLLM",
        "kitchen_models[].serving.dtype": "vLLM",
        "kitchen_lora.pvc_size": "the adapter PVC",
        # llama-server on one host loads every prepared version at start: no bound applies.
        "kitchen_lora.max_loras": "vLLM's adapters per batch",
        "kitchen_lora.max_cpu_loras": "vLLM's CPU adapter cache",
        # A single host's tenants are gateway consumers (phase 4): no project, quota or policy.
        "kitchen_tenants[].quota": "the tenant's ResourceQuota",
        "kitchen_tenants[].limits": "the tenant's LimitRange",
        "kitchen_tenants[].allow_from_namespaces": "the tenant's NetworkPolicy",
    },
}


def violations(site: dict) -> list[Violation]:
    return images_outside_registry(site) + plain_transport(site) + not_supported(site) + other_platform(site)


def _walk(node, path=""):
    """(path, key, value) of every mapping entry and list item below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = "%s.%s" % (path, key) if path else str(key)
            yield here, key, value
            yield from _walk(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            here = "%s[%d]" % (path, index)
            yield here, None, value
            yield from _walk(value, here)


def allowed_image_prefixes(registry) -> list[str]:
    """Where a site's images may come from: its internal registry and the mirrors in it."""
    if not isinstance(registry, dict) or not isinstance(registry.get("host"), str):
        return []
    prefixes = [registry["host"]]
    for mirror in registry.get("mirrors") or []:
        if isinstance(mirror, dict) and isinstance(mirror.get("mirror"), str):
            prefixes.append(mirror["mirror"])
    return prefixes


def images_outside_registry(site: dict) -> list[Violation]:
    prefixes = allowed_image_prefixes(site.get("kitchen_registry"))
    if not prefixes:
        return []  # no registry host: the schema reports it
    found = []
    images = site.get("kitchen_images")
    for key, image in sorted(images.items()) if isinstance(images, dict) else []:
        found.append(("kitchen_images.%s" % key, image))
    catalogs = (site.get("kitchen_registry") or {}).get("catalogs")
    for index, catalog in enumerate(catalogs if isinstance(catalogs, list) else []):
        if isinstance(catalog, dict):
            found.append(("kitchen_registry.catalogs[%d].image" % index, catalog.get("image")))
    out = []
    for path, image in found:
        if isinstance(image, str) and not any(image.startswith(p.rstrip("/") + "/") for p in prefixes):
            out.append(Violation(path, "%r is not in the internal registry: expected an image below %s" % (
                image, " or ".join(sorted(set(prefixes))))))
    return out


def plain_transport(site: dict) -> list[Violation]:
    """Plain-HTTP URLs anywhere, and TLS verification switched off anywhere."""
    out = []
    for path, key, value in _walk(site):
        if isinstance(value, str) and value.strip().lower().startswith("http://"):
            out.append(Violation(path, "%r is plain HTTP: use https:// with a certificate from kitchen_ca "
                                       "(data and credentials cross this connection)" % value.strip()))
        elif key in VERIFY_KEYS and value is False:
            out.append(Violation(path, "False is refused: TLS verification stays on; trust kitchen_ca instead"))
        elif key in INSECURE_KEYS and value is True:
            out.append(Violation(path, "True is refused: serve it over TLS with a certificate from kitchen_ca"))
    return out


def not_supported(site: dict) -> list[Violation]:
    out = []
    for name, phase in sorted(NOT_SUPPORTED.items()):
        value = site.get(name)
        if value is not None and not (isinstance(value, dict) and value.get("enabled") is False):
            out.append(Violation(name, "not supported yet (%s)" % phase))
    for index, adapter in enumerate(site.get("kitchen_adapters") or []):
        if isinstance(adapter, dict) and adapter.get("tenants"):
            out.append(Violation("kitchen_adapters[%d].tenants" % index,
                                 "not supported yet (phase 4: the gateway decides which tenants call a flavour)"))
    return out


def _find(node, parts, path=""):
    """(path, value) of every place `parts` (['kitchen_models[]', 'serving', 'dtype']) is set."""
    if not parts:
        yield path, node
        return
    name, each = parts[0].removesuffix("[]"), parts[0].endswith("[]")
    if not isinstance(node, dict) or name not in node:
        return
    here = "%s.%s" % (path, name) if path else name
    if each:
        for index, item in enumerate(node[name] if isinstance(node[name], list) else []):
            yield from _find(item, parts[1:], "%s[%d]" % (here, index))
    else:
        yield from _find(node[name], parts[1:], here)


def other_platform(site: dict) -> list[Violation]:
    platform = site.get("kitchen_platform")
    out = []
    for owner, keys in sorted(PLATFORM_ONLY.items()):
        if platform == owner or platform not in PLATFORM_ONLY:
            continue
        for key, reader in keys.items():
            for path, _ in _find(site, key.split(".")):
                out.append(Violation(path, "not supported on kitchen_platform %s: only %s reads it (%s)" % (
                    platform, owner, reader)))
    return sorted(out)
