# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Closed side: verify a bundle (or some of its volumes) and import it.

Everything is checked before anything is written: every file's sha256, the certificates'
validity, the registry (reachable, credentials, which images it holds) and S3 (which objects
exist, and that no published adapter version would change). Only then are images pushed,
objects uploaded and model files placed, and a receipt written. A failed check writes nothing.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import socket
import time

import yaml

from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_images as images
from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_s3 as s3
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import (
    KINDS,
    canonical_json,
    find_volumes,
    item_digest,
    item_label,
    item_prefix,
    iter_files,
    load_manifest,
    sums_text,
)
from ansible_collections.privateai.kitchen.plugins.module_utils.content_checks import certificate_facts
from ansible_collections.privateai.kitchen.plugins.module_utils.files import (
    KitchenError,
    Progress,
    ProgressFile,
    atomic_write,
    copy_verified,
    sha256_file,
    verify_files,
)

AUDIT = "audit"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_volumes(paths):
    """The manifest and {volume: folder} of the given bundle or volume folders; they must all
    belong to one bundle."""
    manifest, digest, folders = None, None, {}
    for path in paths:
        volumes = find_volumes(path)
        if not volumes:
            raise KitchenError("%s: no bundle volume here (a volume folder holds a VOLUME file)" % path)
        for name, folder in volumes.items():
            this, this_digest = load_manifest(folder)
            if digest and this_digest != digest:
                raise KitchenError("%s belongs to bundle %s, not to %s: import one bundle at a time"
                                  % (folder, this["bundle_id"], manifest["bundle_id"]))
            manifest, digest = this, this_digest
            folders[name] = folder
    return manifest, digest, folders


def verify(paths, workers=None, progress=None, kinds=KINDS):
    """Check every file of the given volumes (of the given kinds); raises with every problem
    at once. progress: a ProgressFile (or anything with its stage/advance/step)."""
    progress = progress or ProgressFile()
    manifest, digest, folders = open_volumes(paths)
    entries, problems = [], []
    for kind, _, entry in iter_files(manifest):
        if kind in kinds and entry["volume"] in folders:
            entries.append(entry)
    started = time.monotonic()
    progress.stage("verify sha256 of %d files" % len(entries), sum(e["size"] for e in entries))
    problems += verify_files(entries, lambda e: folders[e["volume"]], workers, progress.advance)
    seconds = time.monotonic() - started
    for item in manifest["ca_certificates"] if "ca_certificates" in kinds else []:
        for entry in item["files"]:
            if entry["volume"] in folders:
                try:
                    certificate_facts(item["name"], os.path.join(folders[entry["volume"]], entry["path"]))
                except KitchenError as exc:
                    problems.append(str(exc))
    missing = sorted(v["name"] for v in manifest["volumes"] if v["name"] not in folders)
    if problems:
        raise KitchenError("bundle %s: %d problem(s); nothing was imported:\n  %s"
                          % (manifest["bundle_id"], len(problems), "\n  ".join(problems)))
    return {"bundle_id": manifest["bundle_id"], "manifest_sha256": digest, "volumes": sorted(folders),
            "volumes_not_here": missing, "files": len(entries), "bytes": sum(e["size"] for e in entries),
            "seconds": round(seconds, 3)}, manifest, folders


class Target:
    """Where a site keeps things: registry, S3 buckets, and (single host) the model folder."""

    def __init__(self, spec):
        self.spec = spec
        self.registry_host = spec["registry"]["host"]
        self.buckets = spec.get("buckets") or {}
        self.model_dir = spec.get("model_dir")
        self.ca_dir = spec.get("ca_dir")


def _object_plan(manifest, folders, target):
    """(bucket, key, entry, folder, item kind, item) of every object the volumes bring."""
    out = []
    for kind, item, entry in iter_files(manifest):
        if entry["volume"] not in folders or kind in ("images", "ca_certificates"):
            continue
        relative = os.path.relpath(entry["path"], item_prefix(kind, item))
        if kind == "models":
            bucket, key = target.buckets["models"], "%s/%s" % (item["name"], relative)
        elif kind == "adapters":
            bucket, key = target.buckets["adapters"], "lora/%s/%s/%s" % (item["name"], item["version"], relative)
        else:
            bucket, key = target.buckets["eval"], "%s/%s" % (item["name"], relative)
        out.append((bucket, key, entry, folders[entry["volume"]], kind, item))
    return out


def import_bundle(paths, spec, workers=None, progress=None, check_mode=False, signature=None):
    """Verify, check the site, then import. Returns a result dict (changed, receipt, ...).
    progress: a ProgressFile (stages and bytes of the long steps)."""
    progress = progress or ProgressFile()
    summary, manifest, folders = verify(paths, workers, progress)
    progress.stage("check the registry and S3")
    target = Target(spec)
    access = _registry_access(spec, target)
    storage = spec["storage"]
    client = s3.make_client(storage["endpoint"], storage["access_key"], storage["secret_key"],
                            storage.get("region", "us-east-1"), storage.get("ca_file"))
    from botocore.exceptions import BotoCoreError, ClientError

    result = {"changed": False, "verified": summary, "images": [], "objects": [], "model_files": [],
              "bytes_sent": 0}
    try:
        # 1. Look, write nothing.
        pushes = _plan_pushes(manifest, folders, target, access)
        result["images"] = [_image_line(item, destination, present) for item, destination, present in pushes]
        objects = _object_plan(manifest, folders, target)
        try:
            buckets = {b: s3.bucket_exists(client, b) for b in sorted({o[0] for o in objects} | {target.buckets["models"]})}
            states = [s3.object_state(client, b, k, e["sha256"], e["size"]) if buckets[b] else "absent"
                      for b, k, e, _, _, _ in objects]
        except (BotoCoreError, ClientError) as exc:
            raise KitchenError("S3 at %s cannot be used: %s" % (storage["endpoint"], exc)) from None
        conflicts = ["s3://%s/%s: %s is published with other content; a published adapter version is never "
                     "overwritten: give the new content a new version" % (b, k, item_label(kind, item))
                     for (b, k, _, _, kind, item), state in zip(objects, states)
                     if state == "different" and kind == "adapters"]
        if conflicts:
            raise KitchenError("bundle %s: %d conflict(s); nothing was imported:\n  %s"
                              % (manifest["bundle_id"], len(conflicts), "\n  ".join(conflicts)))
        model_copies = _model_placements(manifest, folders, target)

        to_send = [(o, state) for o, state in zip(objects, states) if state != "present"]
        for (b, k, e, _, kind, item), state in zip(objects, states):
            result["objects"].append({"bucket": b, "key": k, "sha256": e["sha256"], "size": e["size"],
                                      "action": {"present": "present", "absent": "upload",
                                                 "different": "replace"}[state]})
        pending = [p for p in pushes if not p[2]] or to_send or model_copies \
            or any(not exists for exists in buckets.values())
        if check_mode or not pending:
            result["changed"] = bool(pending)
            result["receipt"] = None
            return result

        # 2. Write.
        started = _now()
        _push(pushes, folders, access, progress)
        for bucket, exists in buckets.items():
            if not exists:
                s3.ensure_bucket(client, bucket)
        uploads = [s3.Upload(b, k, os.path.join(folder, e["path"]), e["sha256"], e["size"])
                   for (b, k, e, folder, _, _), _ in to_send]
        total = sum(u.size for u in uploads)
        progress.stage("upload %d objects to S3" % len(uploads), total)
        outcome, sent = s3.Uploader(client, report=Progress(total, progress.advance, progress.step)).upload(uploads)
        result["bytes_sent"] = sent
        for entry in result["objects"]:
            if entry["key"] in outcome and entry["action"] != "present":
                entry["action"] = outcome[entry["key"]] if entry["action"] == "upload" else "replaced"
        _write_model_sums(client, manifest, target)
        if model_copies:
            progress.stage("place %d model files in %s" % (len(model_copies), target.model_dir))
        for source, destination, sha in model_copies:
            copy_verified(source, destination, sha)
            result["model_files"].append(destination)
        for item in manifest["ca_certificates"]:
            if target.ca_dir and item["files"][0]["volume"] in folders:
                entry = item["files"][0]
                copy_verified(os.path.join(folders[entry["volume"]], entry["path"]),
                       os.path.join(target.ca_dir, os.path.basename(entry["path"])), entry["sha256"])
        result["changed"] = True
        result["receipt"] = _write_receipt(manifest, summary, result, folders, client, target, started, signature)
        result["mirror_config"] = _write_mirror_config(manifest, target, spec.get("mirror_config"))
    except (BotoCoreError, ClientError) as exc:
        raise KitchenError("S3 at %s failed: %s" % (storage["endpoint"], exc)) from None
    finally:
        access.close()
    return result


def _registry_access(spec, target):
    registry = spec["registry"]
    return images.RegistryAccess(host=target.registry_host, ca_file=registry.get("ca_file"),
                                 username=registry.get("username"), password=registry.get("password"))


def _plan_pushes(manifest, folders, target, access):
    """(item, destination, present) of every image the given volumes bring."""
    pushes = []
    for item in manifest["images"]:
        if not item["shipped"] or item["files"][0]["volume"] not in folders:
            continue
        destination = "%s/%s" % (target.registry_host, item["repository"])
        pushes.append((item, destination, images.registry_has(destination, item["digest"], access)))
    return pushes


def _image_line(item, destination, present):
    return {"name": item["name"], "target": "%s@%s" % (destination, item["digest"]),
            "action": "present" if present else "push"}


def _push(pushes, folders, access, progress):
    for item, destination, present in pushes:
        if not present:
            progress.stage("push image %s to %s" % (item["name"], destination))
            images.push_layout(os.path.join(folders[item["files"][0]["volume"]], item["layout"]),
                               item["tag"], destination, item["digest"], access)


def import_images(paths, spec, workers=None, progress=None, check_mode=False):
    """Only the images: a single host's first step, since its S3 server runs from one of
    them. Verifies the image files, pushes what the registry lacks (digests kept) and writes
    the mirror configuration; the full import later finds them present."""
    progress = progress or ProgressFile()
    summary, manifest, folders = verify(paths, workers, progress, kinds=("images",))
    target = Target(spec)
    access = _registry_access(spec, target)
    try:
        progress.stage("check the registry")
        pushes = _plan_pushes(manifest, folders, target, access)
        pending = any(not present for _, _, present in pushes)
        result = {"changed": pending, "images": [_image_line(*p) for p in pushes], "objects": [], "model_files": [],
                  "bytes_sent": 0, "receipt": None, "verified": summary}
        if not check_mode:
            _push(pushes, folders, access, progress)
            result["mirror_config"] = _write_mirror_config(manifest, target, spec.get("mirror_config"))
    finally:
        access.close()
    return result


def _model_placements(manifest, folders, target):
    """(source, destination, sha256) of model files the single-host folder still lacks."""
    if not target.model_dir:
        return []
    out = []
    for kind, item, entry in iter_files(manifest):
        if kind != "models" or entry["volume"] not in folders:
            continue
        destination = os.path.join(target.model_dir, item["name"],
                                   os.path.relpath(entry["path"], item_prefix(kind, item)))
        if os.path.isfile(destination) and os.path.getsize(destination) == entry["size"] \
                and sha256_file(destination)[0] == entry["sha256"]:
            continue
        out.append((os.path.join(folders[entry["volume"]], entry["path"]), destination, entry["sha256"]))
    return out


def _write_model_sums(client, manifest, target):
    """SHA256SUMS of a model once all its files are in the bucket (the fill Job's contract)."""
    bucket = target.buckets["models"]
    for item in manifest["models"]:
        if not item["shipped"]:
            continue
        files = {os.path.relpath(f["path"], item_prefix("models", item)): f for f in item["files"]}
        if all(s3.object_state(client, bucket, "%s/%s" % (item["name"], name), f["sha256"], f["size"]) == "present"
               for name, f in files.items()):
            s3.put_bytes(client, bucket, "%s/SHA256SUMS" % item["name"],
                         sums_text({n: f["sha256"] for n, f in files.items()}).encode())


def _write_receipt(manifest, summary, result, folders, client, target, started, signature):
    held = []
    for kind in KINDS:
        for item in manifest[kind]:
            complete = all(f["volume"] in folders for f in item["files"])
            if not item["shipped"] or complete:
                entry = {"kind": kind, "name": item["name"], "digest": item_digest(kind, item)}
                if item.get("version"):
                    entry["version"] = item["version"]
                held.append(entry)
    stamp = _now()
    receipt = {
        "bundle_id": manifest["bundle_id"], "manifest_sha256": summary["manifest_sha256"], "site": manifest["site"],
        "started": started, "finished": stamp, "operator": "%s@%s" % (getpass.getuser(), socket.gethostname()),
        "signature": signature or "not required",
        "verified": {"volumes": summary["volumes"], "files": summary["files"], "bytes": summary["bytes"],
                     "algorithm": "sha256", "seconds": summary["seconds"]},
        "images": result["images"], "objects": result["objects"], "model_files": result["model_files"],
        "items": held,
    }
    data = canonical_json(receipt)
    name = "receipt-%s-%s.json" % (manifest["bundle_id"], stamp.replace(":", ""))
    bundle_root = os.path.dirname(next(iter(folders.values())))
    audit = os.path.join(bundle_root, AUDIT)
    os.makedirs(audit, exist_ok=True)
    atomic_write(os.path.join(audit, name), data)
    with open(os.path.join(audit, "receipts.log"), "a", encoding="utf-8") as log:
        log.write(json.dumps({"time": stamp, "bundle_id": manifest["bundle_id"], "receipt": name,
                              "operator": receipt["operator"]}, sort_keys=True) + "\n")
    s3.put_bytes(client, target.buckets["models"], "receipts/%s/%s" % (manifest["bundle_id"], name), data)
    return {"path": os.path.join(audit, name),
            "s3": "s3://%s/receipts/%s/%s" % (target.buckets["models"], manifest["bundle_id"], name)}


def _write_mirror_config(manifest, target, path):
    """kitchen_images and kitchen_registry.mirrors entries for the images the site now holds."""
    if not path:
        return None
    kitchen_images, mirrors = {}, []
    for item in manifest["images"]:
        repository = "%s/%s" % (target.registry_host, item["repository"])
        kitchen_images[item["name"].replace("-", "_")] = "%s@%s" % (repository, item["digest"])
        if item.get("mirror_of"):
            mirrors.append({"source": item["mirror_of"], "mirror": repository})
    data = yaml.safe_dump({"kitchen_images": kitchen_images, "kitchen_registry_mirrors": mirrors},
                          sort_keys=True, default_flow_style=False).encode()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # atomic_write leaves a file that already holds these bytes untouched
    atomic_write(path, b"---\n# Written by the bundle import: images the internal registry holds, by digest.\n" + data)
    return path
