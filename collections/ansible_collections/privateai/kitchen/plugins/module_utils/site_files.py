# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Site rule of files: every file the site names exists where the run reads it.

Closed-side runs (phases 1-4) read the company CA and, when signatures are required, the
signing certificate. The connected side (playbooks/bundle.yml) also reads every local source
the bundle collects; on the closed side those are in the bundle, and the phase 3 gate checks
them there. Relative paths are relative to the inventory (kitchen_ca.bundle_file documents it).
"""

from __future__ import annotations

import os

from ansible_collections.privateai.kitchen.plugins.module_utils.site_rules import Violation, get_path

# Sources that are not local files: fetched by the bundle build itself.
_REMOTE = ("s3://", "pypi://", "hf://")


def resolve(path: str, base_dir: str | None) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) or not base_dir else os.path.normpath(os.path.join(base_dir, path))


def referenced_files(site: dict, *, connected: bool) -> list[tuple[str, str]]:
    """(variable path, file) of every local file this run reads."""
    out = []

    def add(path):
        value = get_path(site, path)
        if isinstance(value, str) and value:
            out.append((path, value))

    ca = site.get("kitchen_ca") if isinstance(site.get("kitchen_ca"), dict) else {}
    if ca.get("generate") is not True:  # a generated CA is made by the run (local_pki)
        add("kitchen_ca.bundle_file")
        add("kitchen_ca.key_file")
    bundle = site.get("kitchen_bundle") if isinstance(site.get("kitchen_bundle"), dict) else {}
    if bundle.get("require_signature") is True or connected:
        add("kitchen_bundle.signing_certificate")
    if not connected:
        return out
    for key in ("signing_key", "source_ca_file", "source_authfile", "receipt", "source_s3.ca_file"):
        add("kitchen_bundle." + key)
    for kind in ("models", "adapters", "eval_sets", "ca_certificates"):
        items = bundle.get(kind)
        for index, item in enumerate(items if isinstance(items, list) else []):
            path = item.get("path") if isinstance(item, dict) else None
            if isinstance(path, str) and path and not path.startswith(_REMOTE):
                out.append(("kitchen_bundle.%s[%d].path" % (kind, index), path))
    return out


def missing_files(site: dict, *, base_dir: str | None, connected: bool, exists=os.path.exists) -> list[Violation]:
    out = []
    for path, value in referenced_files(site, connected=connected):
        where = resolve(value, base_dir)
        if not exists(where):
            shown = repr(value) + ("" if where == value else " (%s)" % where)
            out.append(Violation(path, "%s does not exist%s" % (
                shown, " on the controller" if not connected else " on the connected side")))
    return out + (missing_eval_files(site, base_dir=base_dir, exists=exists) if connected else [])


def missing_eval_files(site: dict, *, base_dir: str | None, exists=os.path.exists) -> list[Violation]:
    """An adapter's eval_set <name>/<file> must be that eval set's file, or a file in its folder:
    the bundle carries it as eval/<name>/<file>."""
    bundle = site.get("kitchen_bundle") if isinstance(site.get("kitchen_bundle"), dict) else {}
    sets = {e.get("name"): e.get("path") for e in bundle.get("eval_sets") or [] if isinstance(e, dict)}
    out = []
    for index, adapter in enumerate(site.get("kitchen_adapters") or []):
        eval_set = adapter.get("eval_set") if isinstance(adapter, dict) else None
        name, _, file = eval_set.partition("/") if isinstance(eval_set, str) else ("", "", "")
        path = sets.get(name)
        if not file or not isinstance(path, str) or path.startswith(_REMOTE) or not exists(resolve(path, base_dir)):
            continue  # no such set (the reference rule), a remote one, or the missing path is reported
        where = resolve(path, base_dir)
        if os.path.basename(where) != file and not exists(os.path.join(where, file)):
            out.append(Violation("kitchen_adapters[%d].eval_set" % index, "%r: eval set %s (%s) has no file %s" % (
                eval_set, name, where, file)))
    return out
