# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""A KServe modelcar (an image whose /models folder holds the model files) as a model
source: skopeo copies the image by digest (and so verifies every blob), its layers are
applied in order and what ends up below models/ is the model.

The bundle carries the files, not the image: the site fills its model PVC from S3 as for
every other source (phase 2), and keeps one path for every model. A site that would rather
serve the image itself (storageUri: oci://) carries it in kitchen_bundle.images instead.
"""

from __future__ import annotations

import gzip
import json
import os
import posixpath
import shutil
import tarfile

from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_images as images
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import canonical_json
from ansible_collections.privateai.kitchen.plugins.module_utils.files import KitchenError, atomic_write, read_json

MARKER = "extracted.json"
MODELS = "models/"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_TAR_TYPES = ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar")
_GZIP_TYPES = ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip")


def model_path(member_name):
    """The path below models/ of a layer member ('./models/a/b' -> 'a/b'), '' for the folder
    itself, None for anything outside it; KitchenError for a path that climbs out."""
    name = member_name.lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    if name.rstrip("/") + "/" == MODELS:
        return ""
    if not name.startswith(MODELS):
        return None
    relative = posixpath.normpath(name[len(MODELS):])
    if relative.startswith("..") or relative.startswith("/"):
        raise KitchenError("layer member %r leaves models/" % member_name)
    return relative


def _blob(layout, digest):
    return os.path.join(layout, "blobs", *digest.split(":", 1))


def _open_layer(layout, layer):
    media = layer.get("mediaType", "")
    path = _blob(layout, layer["digest"])
    if media in _GZIP_TYPES:
        return tarfile.open(fileobj=gzip.open(path, "rb"), mode="r|")
    if media in _TAR_TYPES:
        return tarfile.open(path, mode="r|")
    raise KitchenError("layer %s has media type %r; modelcar layers are tar or tar+gzip" % (layer["digest"], media))


def _apply_layer(stream, target):
    """Apply one layer's changes below models/ to `target` (whiteouts remove, files replace)."""
    for member in stream:
        relative = model_path(member.name)
        if relative is None or relative in ("", "."):
            continue
        base = posixpath.basename(relative)
        destination = os.path.join(target, relative)
        if base == OPAQUE:
            shutil.rmtree(os.path.dirname(destination), ignore_errors=True)
            os.makedirs(os.path.dirname(destination), exist_ok=True)
        elif base.startswith(WHITEOUT):
            gone = os.path.join(os.path.dirname(destination), base[len(WHITEOUT):])
            if os.path.isdir(gone):
                shutil.rmtree(gone)
            elif os.path.lexists(gone):
                os.unlink(gone)
        elif member.isdir():
            os.makedirs(destination, exist_ok=True)
        elif member.isfile():
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            if os.path.lexists(destination):
                os.unlink(destination)
            with stream.extractfile(member) as data, open(destination, "wb") as out:
                shutil.copyfileobj(data, out, 4 << 20)
        else:
            raise KitchenError("models/%s is a %s; the bundle carries regular files only"
                              % (relative, "link" if member.issym() or member.islnk() else "special file"))


def _cached(folder, reference):
    done = read_json(os.path.join(folder, MARKER)) or {}
    files = os.path.join(folder, "models")
    return done.get("reference") == reference and all(
        os.path.isfile(os.path.join(files, n)) and os.path.getsize(os.path.join(files, n)) == size
        for n, size in done.get("files", {}).items())


def fetch(label, image, digest, folder, *, ca_file=None, authfile=None):
    """Make `folder`/models hold the /models files of image@digest. Returns (that folder,
    [oci://... when the image was fetched])."""
    reference = "%s@%s" % (image, digest)
    source = "oci://" + reference
    models = os.path.join(folder, "models")
    if _cached(folder, reference):
        return models, []
    layout = os.path.join(folder, "layout")
    access = images.RegistryAccess(ca_file=ca_file, authfile=authfile)
    try:
        images.copy_to_layout("docker://" + reference, layout, "model", access, all_platforms=False)
    except KitchenError as exc:
        raise KitchenError("%s: %s: %s" % (label, source, exc)) from None
    finally:
        access.close()
    staging = models + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        with open(os.path.join(layout, "index.json"), encoding="utf-8") as handle:
            entry = json.load(handle)["manifests"][0]
        with open(_blob(layout, entry["digest"]), encoding="utf-8") as handle:
            manifest = json.load(handle)
        for layer in manifest.get("layers", []):
            with _open_layer(layout, layer) as stream:
                _apply_layer(stream, staging)
    except KitchenError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KitchenError("%s: %s: %s" % (label, source, exc)) from None
    files = {}
    for root, _, names in os.walk(staging):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, staging)] = os.path.getsize(path)
    if not files:
        shutil.rmtree(staging, ignore_errors=True)
        raise KitchenError("%s: %s holds no files under /models (a KServe modelcar keeps its model there)"
                          % (label, source))
    shutil.rmtree(models, ignore_errors=True)
    os.replace(staging, models)
    shutil.rmtree(layout, ignore_errors=True)
    atomic_write(os.path.join(folder, MARKER), canonical_json({"reference": reference, "files": files}))
    return models, [source]
