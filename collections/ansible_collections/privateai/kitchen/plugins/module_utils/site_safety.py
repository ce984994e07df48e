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


def violations(site: dict) -> list[Violation]:
    return images_outside_registry(site) + plain_transport(site) + not_supported(site)


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
