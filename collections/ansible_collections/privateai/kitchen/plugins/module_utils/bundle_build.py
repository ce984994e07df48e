# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Build a bundle on the connected side: plan first, then collect only what is missing.

plan(spec) reads every source (image digests, file hashes, content checks) and compares it
with the bundle already in the folder and with the receipt of what the site holds; it writes
nothing. build(spec, plan) carries it out: new images are copied with skopeo, new files are
copied (hashed again while copied, so a source changed since the plan is caught), items
that moved volume are renamed, stale files removed, and the manifest written last.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil

from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_images as images
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import (
    FORMAT,
    KINDS,
    MANIFEST,
    VERSION,
    VOLUME_MARKER,
    assign_volumes,
    canonical_json,
    content_digest,
    item_digest,
    item_key,
    item_label,
    item_prefix,
    load_manifest,
    write_manifest,
)
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_sources import Sources
from ansible_collections.privateai.kitchen.plugins.module_utils.content_checks import (
    certificate_facts,
    check_model_dir,
    read_adapter,
)
from ansible_collections.privateai.kitchen.plugins.module_utils.files import (
    KitchenError,
    ProgressFile,
    atomic_write,
    copy_verified,
    hash_files,
)

CACHE = ".kitchen-cache"
HASH_CACHE = "hashes.json"
STAGING = "staging"


class HashCache:
    """sha256 of source files keyed by (path, size, mtime): a rebuild rehashes nothing unchanged."""

    def __init__(self, bundle_dir, progress=None):
        self.path = os.path.join(bundle_dir, CACHE, HASH_CACHE)
        self.progress = progress or ProgressFile()
        try:
            with open(self.path, encoding="utf-8") as handle:
                self.entries = json.load(handle)
        except (FileNotFoundError, ValueError):
            self.entries = {}

    @staticmethod
    def _key(path):
        stat = os.stat(path)
        return "%s|%d|%d" % (os.path.abspath(path), stat.st_size, stat.st_mtime_ns), stat.st_size

    def hashes(self, paths, workers):
        out, missing = {}, []
        for path in paths:
            key, size = self._key(path)
            if key in self.entries:
                out[path] = (self.entries[key], size)
            else:
                missing.append(path)
        if missing:
            self.progress.stage("hash %d new or changed source files" % len(missing),
                                sum(os.path.getsize(p) for p in missing))
        for path, (digest, size) in hash_files(missing, workers, self.progress.advance).items():
            self.entries[self._key(path)[0]] = digest
            out[path] = (digest, size)
        return out

    def save(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        atomic_write(self.path, canonical_json(self.entries))


def _list_files(label, path):
    """Relative paths of the regular files of a file or folder (hidden files skipped)."""
    if os.path.isfile(path):
        return os.path.dirname(path), [os.path.basename(path)]
    if not os.path.isdir(path):
        raise KitchenError("%s: source %s does not exist" % (label, path))
    out = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.relpath(os.path.join(folder, f), path) for f in files if not f.startswith(".")]
    if not out:
        raise KitchenError("%s: source folder %s is empty" % (label, path))
    return path, sorted(out)


def _file_item(kind, spec_item, root, names, cache, workers, **extra):
    hashes = cache.hashes([os.path.join(root, n) for n in names], workers)
    item = {"name": spec_item["name"], "shipped": True, "files": []}
    item.update(extra)
    prefix = item_prefix(kind, item)
    for name in names:
        digest, size = hashes[os.path.join(root, name)]
        item["files"].append({"path": "%s/%s" % (prefix, name), "size": size, "sha256": digest, "volume": None,
                              "_source": os.path.join(root, name)})
    return item


def _load_receipt(path):
    if not path:
        return None, set()
    try:
        with open(path, encoding="utf-8") as handle:
            receipt = json.load(handle)
    except (OSError, ValueError) as exc:
        raise KitchenError("kitchen_bundle.receipt: cannot read %s: %s" % (path, exc)) from None
    held = {(i["kind"], i["name"], i.get("version", ""), i["digest"]) for i in receipt.get("items", [])}
    return {"bundle_id": receipt["bundle_id"], "sha256": receipt["manifest_sha256"]}, held


def plan(spec, write_cache=True, progress=None):
    """What a build would do. spec: see the bundle_build module's options. With write_cache
    false (check mode) not even the hash cache is written. progress: a ProgressFile."""
    bundle_dir = spec["dir"]
    workers = spec.get("workers")
    progress = progress or ProgressFile()
    progress.stage("read the sources")
    cache = HashCache(bundle_dir, progress)
    sources = Sources(spec)
    base_receipt, held = _load_receipt(spec.get("receipt"))
    try:
        old, _ = load_manifest(bundle_dir)
    except KitchenError:
        old = None  # no bundle yet, or a damaged one: everything is collected anew
    old_items = {item_key(k, i): i for k in KINDS for i in (old or {}).get(k, [])}

    items = {kind: [] for kind in KINDS}
    access = images.RegistryAccess(ca_file=spec.get("source_ca_file"), authfile=spec.get("source_authfile"))
    try:
        for image in spec.get("images", []):
            digest, raw = images.raw_digest(image["source"], access)
            items["images"].append({
                "name": image["name"], "shipped": True, "files": [], "source": image["source"], "digest": digest,
                "repository": image["repository"], "tag": image.get("tag") or "bundle",
                "mirror_of": image.get("mirror_of"), "layout": "images/%s" % image["name"],
                "_estimate": images.estimated_size(raw, image["source"], access)})
    finally:
        access.close()

    models = {}
    for model in spec.get("models", []):
        label = "model %s" % model["name"]
        root, names = _list_files(label, sources.local(label, model["path"], model.get("allow_patterns")))
        check_model_dir(model["name"], root, names)
        item = _file_item("models", model, root, names, cache, workers, format=model.get("format", "safetensors"),
                          digest=None)
        item["digest"] = item_digest("models", item)
        items["models"].append(item)
        models[model["name"]] = item["digest"]
    at_site_models = {(name): digest for kind, name, _, digest in held if kind == "models"}
    for adapter in spec.get("adapters", []):
        label = "%s %s" % (adapter["name"], adapter["version"])
        local = sources.local("adapter %s" % label, adapter["path"])
        facts = read_adapter(label, local)
        base = adapter["base_model"]
        base_digest = models.get(base) or at_site_models.get(base)
        if not base_digest:
            raise KitchenError("adapter %s: base model %r is neither in this bundle nor in the site's receipt"
                              % (label, base))
        root, names = _list_files("adapter %s" % label, local)
        items["adapters"].append(_file_item(
            "adapters", adapter, root, names, cache, workers, version=adapter["version"], base_model=base,
            base_model_digest=base_digest, rank=facts["rank"], alpha=facts["alpha"],
            target_modules=facts["target_modules"], base_model_name_or_path=facts["base_model_name_or_path"]))
    for ca in spec.get("ca_certificates", []):
        facts = certificate_facts(ca["name"], ca["path"])
        item = _file_item("ca_certificates", ca, os.path.dirname(ca["path"]), [os.path.basename(ca["path"])],
                          cache, workers, certificates=facts)
        item["files"][0]["path"] = "ca/%s.pem" % ca["name"]
        items["ca_certificates"].append(item)
    for eval_set in spec.get("eval_sets", []):
        label = "eval set %s" % eval_set["name"]
        root, names = _list_files(label, sources.local(label, eval_set["path"]))
        items["eval_sets"].append(_file_item("eval_sets", eval_set, root, names, cache, workers))
    if write_cache:
        cache.save()

    actions = []
    for kind in KINDS:
        for item in items[kind]:
            digest = item_digest(kind, item)
            previous = old_items.get(item_key(kind, item))
            if (kind, item["name"], item.get("version", ""), digest) in held:
                item["shipped"] = False
                action = "at-site"
            elif previous and previous["shipped"] and item_digest(kind, previous) == digest:
                action = "in-bundle"
                if kind == "images":
                    item["files"] = [dict(f) for f in previous["files"]]
            else:
                action = "add"
            item["_action"] = action
            size = sum(f["size"] for f in item["files"]) or item.get("_estimate") or 0
            actions.append({"action": action, "item": item_label(kind, item), "bytes": size, "digest": digest})
    return {"items": items, "old": old, "base_receipt": base_receipt, "actions": actions,
            "downloaded": sources.downloaded}


def _units(items):
    """Placement units: an image, a single model file, or any other whole item."""
    units = []
    for kind in KINDS:
        for item in items[kind]:
            if not item["shipped"]:
                continue
            groups = [[f] for f in item["files"]] if kind == "models" else [item["files"]]
            for files in groups:
                label = item_label(kind, item) + (" file %s" % files[0]["path"] if kind == "models" else "")
                units.append({"label": label, "size": sum(f["size"] for f in files), "files": files})
    return units


def build(spec, the_plan, progress=None):
    """Carry out a plan; returns (changed, manifest)."""
    progress = progress or ProgressFile()
    bundle_dir = spec["dir"]
    items, old = the_plan["items"], the_plan["old"]
    changed = False
    staging = os.path.join(bundle_dir, CACHE, STAGING)

    # Images first: their size is known once copied, and volumes are assigned by size.
    access = images.RegistryAccess(ca_file=spec.get("source_ca_file"), authfile=spec.get("source_authfile"))
    try:
        for item in items["images"]:
            if item["_action"] != "add":
                continue
            progress.stage("copy image %s from %s" % (item["name"], item["source"]), item.get("_estimate") or 0)
            layout = os.path.join(staging, item["layout"])
            stored = images.copy_to_layout(item["source"], layout, item["tag"], access,
                                           spec.get("all_platforms", True))
            if stored != item["digest"]:
                raise KitchenError("image %s: copied digest %s differs from the source's %s"
                                  % (item["name"], stored, item["digest"]))
            names = images.layout_files(layout)
            hashes = hash_files([os.path.join(layout, n) for n in names], spec.get("workers"))
            item["files"] = [{"path": "%s/%s" % (item["layout"], n), "size": hashes[os.path.join(layout, n)][1],
                              "sha256": hashes[os.path.join(layout, n)][0], "volume": None,
                              "_source": os.path.join(layout, n)} for n in names]
            changed = True
    finally:
        access.close()

    units = _units(items)
    for unit, volume in zip(units, assign_volumes(units, spec["volume_size"])):
        for entry in unit["files"]:
            entry["volume"] = volume

    # Where each file is now, in the previous bundle.
    old_places = {}
    for kind in KINDS:
        for item in (old or {}).get(kind, []):
            for entry in item["files"]:
                if entry["volume"]:
                    old_places[(entry["path"], entry["sha256"])] = os.path.join(bundle_dir, entry["volume"], entry["path"])
    wanted = set()
    for unit in units:
        for entry in unit["files"]:
            target = os.path.join(bundle_dir, entry["volume"], entry["path"])
            wanted.add(os.path.abspath(target))
            source = entry.pop("_source", None)
            if os.path.isfile(target) and os.path.getsize(target) == entry["size"] \
                    and old_places.get((entry["path"], entry["sha256"])) == target:
                continue
            previous = old_places.get((entry["path"], entry["sha256"]))
            if previous and os.path.isfile(previous) and previous != target:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(previous, target)
            elif source and source.startswith(staging + os.sep):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(source, target)
            else:
                progress.stage("add %s" % entry["path"], entry["size"])
                copy_verified(source, target, entry["sha256"])
            changed = True
    for kind in KINDS:
        for item in items[kind]:
            for key in [k for k in item if k.startswith("_")]:
                del item[key]
            for entry in item["files"]:
                entry.pop("_source", None)
    shutil.rmtree(staging, ignore_errors=True)

    volumes = {}
    for unit in units:
        for entry in unit["files"]:
            counts = volumes.setdefault(entry["volume"], {"name": entry["volume"], "files": 0, "bytes": 0})
            counts["files"] += 1
            counts["bytes"] += entry["size"]
    changed |= _prune(bundle_dir, wanted, set(volumes))

    manifest = {"format": FORMAT, "version": VERSION, "site": spec["site"], "volume_size": spec["volume_size"],
                "base_receipt": the_plan["base_receipt"], "volumes": [volumes[v] for v in sorted(volumes)]}
    manifest.update(items)
    digest = content_digest(manifest)
    if old and content_digest(old) == digest:
        manifest.update(bundle_id=old["bundle_id"], created=old["created"], tools=old["tools"])
    else:
        manifest.update(bundle_id="%s-%s" % (spec["site"], digest[:12]),
                        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        tools=tool_versions())
    changed |= write_manifest(bundle_dir, manifest)
    return changed, manifest


def _prune(bundle_dir, wanted, volumes):
    """Remove files no longer part of the bundle, and volumes no longer used."""
    changed = False
    for name in sorted(os.listdir(bundle_dir)):
        folder = os.path.join(bundle_dir, name)
        if not os.path.isfile(os.path.join(folder, VOLUME_MARKER)):
            continue
        if name not in volumes:
            shutil.rmtree(folder)
            changed = True
            continue
        for sub, dirs, files in os.walk(folder, topdown=False):
            for file_name in files:
                path = os.path.abspath(os.path.join(sub, file_name))
                if sub == folder and (file_name.startswith(MANIFEST) or file_name == VOLUME_MARKER):
                    continue
                if path not in wanted:
                    os.unlink(path)
                    changed = True
            if sub != folder and not os.listdir(sub):
                os.rmdir(sub)
    return changed


def tool_versions():
    import ansible.release

    versions = {"python": platform.python_version(), "ansible-core": ansible.release.__version__,
                "skopeo": images.skopeo_version()}
    try:
        import boto3
        versions["boto3"] = boto3.__version__
    except ImportError:
        pass
    return versions
