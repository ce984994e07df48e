# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""The bundle manifest (format version 1): what a bundle holds, file by file, and on which
volume. docs/bundle.md describes it; schemas/bundle-manifest.schema.json is generated from
MANIFEST_SCHEMA below by tools/bundle-schema.

Layout of a bundle folder::

    <bundle>/manifest.json            the whole bundle (canonical JSON, sorted keys)
    <bundle>/manifest.json.sha256     coreutils format
    <bundle>/manifest.json.sig        optional detached signature (base64, community.crypto)
    <bundle>/vol-001/VOLUME           the volume's name
    <bundle>/vol-001/manifest.json*   the same three files, so a volume verifies on its own
    <bundle>/vol-001/images/<name>/   OCI image layout (digests preserved)
    <bundle>/vol-001/models/<model>/<file>
    <bundle>/vol-001/adapters/<flavour>/<version>/<file>
    <bundle>/vol-001/ca/<name>.pem
    <bundle>/vol-001/eval/<name>/<file>
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from ansible_collections.privateai.kitchen.plugins.module_utils.files import KitchenError, atomic_write

FORMAT = "private-ai-kitchen-bundle"
VERSION = 1
MANIFEST = "manifest.json"
CHECKSUM = MANIFEST + ".sha256"
SIGNATURE = MANIFEST + ".sig"
VOLUME_MARKER = "VOLUME"
VOLUME_PATTERN = re.compile(r"^vol-[0-9]{3}$")
KINDS = ("images", "models", "adapters", "ca_certificates", "eval_sets")

_SHA256 = {"type": "string", "pattern": "^[a-f0-9]{64}$"}
_NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"}
_FILE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["path", "size", "sha256", "volume"],
    "properties": {
        "path": {"type": "string", "pattern": "^(?!/)(?!.*(^|/)\\.\\.(/|$)).+$",
                 "description": "Relative to the volume folder; never absolute, never '..'."},
        "size": {"type": "integer", "minimum": 0},
        "sha256": _SHA256,
        "volume": {"type": ["string", "null"], "pattern": VOLUME_PATTERN.pattern,
                   "description": "The volume holding the file; null when the site already has it."},
    },
}
_ITEM_COMMON = {
    "name": _NAME,
    "shipped": {"type": "boolean",
                "description": "false: the receipt says the site holds it already; its files are not in the bundle."},
    "files": {"type": "array", "items": _FILE},
}


def _item(required, **properties):
    merged = dict(_ITEM_COMMON)
    merged.update(properties)
    return {"type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "required": ["name", "shipped", "files"] + required, "properties": merged}}


MANIFEST_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://private-ai-kitchen.invalid/schemas/bundle-manifest/v1",
    "title": "Private AI Kitchen air-gap bundle manifest",
    "type": "object",
    "additionalProperties": False,
    "required": ["format", "version", "bundle_id", "site", "created", "tools", "volume_size", "volumes"] + list(KINDS),
    "properties": {
        "format": {"const": FORMAT},
        "version": {"const": VERSION},
        "bundle_id": {"type": "string", "pattern": "^[a-z0-9-]+-[a-f0-9]{12}$",
                      "description": "<site>-<first 12 hex of the content digest>: equal content, equal id."},
        "site": _NAME,
        "created": {"type": "string", "format": "date-time"},
        "tools": {"type": "object", "additionalProperties": {"type": "string"},
                  "description": "Versions of the tools that built the bundle."},
        "base_receipt": {"type": ["object", "null"], "additionalProperties": False,
                         "required": ["bundle_id", "sha256"],
                         "properties": {"bundle_id": {"type": "string"}, "sha256": _SHA256},
                         "description": "The site receipt an incremental bundle was cut against."},
        "volume_size": {"type": "integer", "minimum": 1},
        "volumes": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "files", "bytes"],
            "properties": {"name": {"type": "string", "pattern": VOLUME_PATTERN.pattern},
                           "files": {"type": "integer", "minimum": 0},
                           "bytes": {"type": "integer", "minimum": 0}}}},
        "images": _item(
            ["source", "digest", "repository", "tag", "layout"],
            source={"type": "string", "description": "skopeo reference it was copied from, e.g. docker://quay.io/vllm/vllm-openai:v0.10.1"},
            digest={"type": "string", "pattern": "^sha256:[a-f0-9]{64}$",
                    "description": "Manifest digest in the layout; the internal registry serves the image by it."},
            repository={"type": "string", "description": "Repository path in the internal registry."},
            tag={"type": "string"},
            mirror_of={"type": ["string", "null"], "description": "Source repository the internal one mirrors (for ImageDigestMirrorSet)."},
            layout={"type": "string", "description": "OCI layout folder, relative to the volume."}),
        "models": _item(
            ["format", "digest"],
            format={"enum": ["safetensors", "gguf"]},
            digest={"type": "string", "pattern": "^sha256:[a-f0-9]{64}$",
                    "description": "sha256 of the model's SHA256SUMS text: names the exact weights."}),
        "adapters": _item(
            ["version", "base_model", "base_model_digest", "rank", "target_modules"],
            version={"type": "string"},
            base_model={"type": "string"},
            base_model_digest={"type": "string", "pattern": "^sha256:[a-f0-9]{64}$"},
            rank={"type": "integer", "minimum": 1},
            alpha={"type": ["number", "null"]},
            target_modules={"type": "array", "items": {"type": "string"}},
            base_model_name_or_path={"type": ["string", "null"]}),
        "ca_certificates": _item(
            ["certificates"],
            certificates={"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["subject", "fingerprint_sha256", "not_before", "not_after"],
                "properties": {k: {"type": "string"} for k in ("subject", "fingerprint_sha256", "not_before", "not_after")}}}),
        "eval_sets": _item([]),
    },
}


def canonical_json(data) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_digest(manifest) -> str:
    """Digest of what the bundle holds: the manifest without its id and creation time."""
    core = {k: v for k, v in manifest.items() if k not in ("bundle_id", "created", "tools")}
    return sha256_bytes(canonical_json(core))


def validate(manifest, origin="manifest"):
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(MANIFEST_SCHEMA).iter_errors(manifest),
                    key=lambda e: list(e.absolute_path))
    if errors:
        lines = ["%s: %s: %s" % (origin, "/".join(str(p) for p in e.absolute_path) or "(top)", e.message)
                 for e in errors[:20]]
        raise KitchenError("the bundle manifest is not valid (format %s v%d):\n  " % (FORMAT, VERSION)
                          + "\n  ".join(lines))


def assign_volumes(units, volume_size):
    """Volume name of each unit (dicts with label and size), in order, filling one volume
    before opening the next. A unit is never split: an image or file larger than a volume
    is an error naming it."""
    names, current, used = [], 1, 0
    for unit in units:
        if unit["size"] > volume_size:
            raise KitchenError("%s is %d bytes, larger than kitchen_bundle.volume_size (%d bytes): "
                              "volumes split at file boundaries, so raise the volume size"
                              % (unit["label"], unit["size"], volume_size))
        if used and used + unit["size"] > volume_size:
            current, used = current + 1, 0
        used += unit["size"]
        names.append("vol-%03d" % current)
    return names


def iter_files(manifest, volume=None):
    """(kind, item, file entry) for every shipped file, optionally of one volume only."""
    for kind in KINDS:
        for item in manifest.get(kind, []):
            for entry in item["files"]:
                if entry["volume"] and (volume is None or entry["volume"] == volume):
                    yield kind, item, entry


def write_manifest(bundle_dir, manifest):
    """manifest.json and its checksum in the bundle folder and in every volume folder."""
    data = canonical_json(manifest)
    checksum = ("%s  %s\n" % (sha256_bytes(data), MANIFEST)).encode()
    changed = False
    folders = [bundle_dir] + [os.path.join(bundle_dir, v["name"]) for v in manifest["volumes"]]
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
        changed |= atomic_write(os.path.join(folder, MANIFEST), data)
        changed |= atomic_write(os.path.join(folder, CHECKSUM), checksum)
    for volume in manifest["volumes"]:
        changed |= atomic_write(os.path.join(bundle_dir, volume["name"], VOLUME_MARKER),
                                (volume["name"] + "\n").encode())
    return changed


def load_manifest(folder):
    """The manifest of a bundle or volume folder, after its checksum and schema are checked.
    Returns (manifest, sha256 of manifest.json)."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise KitchenError("%s: no %s here: not a bundle or volume folder" % (folder, MANIFEST)) from None
    try:
        with open(os.path.join(folder, CHECKSUM), encoding="utf-8") as handle:
            expected = handle.read().split()[0]
    except (FileNotFoundError, IndexError):
        raise KitchenError("%s: %s is missing or empty: the manifest cannot be checked" % (folder, CHECKSUM)) from None
    found = sha256_bytes(data)
    if found != expected:
        raise KitchenError("%s: sha256 %s does not match %s (%s): the manifest was changed or damaged"
                          % (path, found, CHECKSUM, expected))
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise KitchenError("%s is not JSON: %s" % (path, exc)) from None
    validate(manifest, path)
    return manifest, found


def find_volumes(path):
    """{volume name: folder} below a bundle folder, or of a single volume folder."""
    marker = os.path.join(path, VOLUME_MARKER)
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as handle:
            return {handle.read().strip(): path}
    found = {}
    for name in sorted(os.listdir(path)) if os.path.isdir(path) else []:
        folder = os.path.join(path, name)
        if os.path.isfile(os.path.join(folder, VOLUME_MARKER)):
            with open(os.path.join(folder, VOLUME_MARKER), encoding="utf-8") as handle:
                found[handle.read().strip()] = folder
    return found


# --- items: their identity, the same on both sides of the gap --------------------------

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
