# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Jinja filters of the image_build role."""

import hashlib
import os


def _context_digest(containerfile):
    """sha256 over every file of the build folder (names and contents), so that a changed
    requirements lock beside the Containerfile rebuilds the image too."""
    folder = os.path.dirname(containerfile)
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(top, name)
            digest.update(os.path.relpath(path, folder).encode() + b"\0")
            with open(path, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def image_references(containerfile_stats, base_image_id, prefix):
    """{name: <prefix>/<name>:<tag>} from the registered stat results of the Containerfiles
    (loop items are the image names). The tag is the first 12 hex digits of sha256 over the
    base image id and the build folder's files: an image is rebuilt exactly when one of them
    changed."""
    out = {}
    for result in containerfile_stats:
        checksum = _context_digest(result["stat"]["path"])
        tag = hashlib.sha256(("%s/%s" % (base_image_id, checksum)).encode()).hexdigest()[:12]
        out[result["item"]] = "%s/%s:%s" % (prefix.rstrip("/"), result["item"], tag)
    return out


def bundle_entries(references, repository_prefix="kitchen"):
    """kitchen_bundle.images entries for images built here: {name: local reference} becomes
    [{name, source: containers-storage:<reference>, repository: <prefix>/<name>, tag}]."""
    return [{"name": name, "source": "containers-storage:" + reference,
             "repository": "%s/%s" % (repository_prefix, name), "tag": reference.rsplit(":", 1)[1]}
            for name, reference in sorted(references.items())]


class FilterModule:
    def filters(self):
        return {"image_references": image_references, "built_image_entries": bundle_entries}
