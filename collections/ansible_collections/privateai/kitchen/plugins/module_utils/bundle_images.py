# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Container images in a bundle, through skopeo: digests are preserved end to end.

Registry credentials go to skopeo in an auth file (never on its command line, where `ps` and
Ansible's logs would show them); a registry's CA goes in a cert dir (`<dir>/ca.crt`), so TLS
is always verified.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

from ansible_collections.privateai.kitchen.plugins.module_utils.files import KitchenError


class RegistryAccess:
    """How skopeo reaches one registry: CA and (optional) credentials."""

    def __init__(self, host=None, ca_file=None, username=None, password=None, authfile=None):
        self.host = host
        self._tmp = tempfile.mkdtemp(prefix="kitchen-skopeo-")
        self.cert_dir = None
        if ca_file:
            self.cert_dir = os.path.join(self._tmp, "certs")
            os.mkdir(self.cert_dir)
            shutil.copy(ca_file, os.path.join(self.cert_dir, "ca.crt"))
        self.authfile = authfile
        if username and password and host:
            self.authfile = os.path.join(self._tmp, "auth.json")
            with open(os.open(self.authfile, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as handle:
                json.dump({"auths": {host: {"auth": base64.b64encode(
                    ("%s:%s" % (username, password)).encode()).decode()}}}, handle)

    def args(self, side):
        """skopeo options for side 'src' or 'dest' (or '' for inspect)."""
        prefix = "--%s-" % side if side else "--"
        out = []
        if self.authfile:
            out += [prefix + "authfile", self.authfile]
        if self.cert_dir:
            out += [prefix + "cert-dir", self.cert_dir]
        return out

    def close(self):
        shutil.rmtree(self._tmp, ignore_errors=True)


def skopeo(*args, what):
    try:
        proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KitchenError("skopeo is not installed: it moves the images (Debian/RHEL package skopeo)") from None
    if proc.returncode:
        message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "exit %d" % proc.returncode
        raise KitchenError("%s: %s" % (what, message))
    return proc.stdout


def skopeo_version():
    try:
        return skopeo("--version", what="skopeo --version").split()[-1]
    except KitchenError:
        return "not installed"


def raw_digest(reference, access=None):
    """Digest and raw manifest of an image as its source serves it (a list stays a list)."""
    raw = skopeo("inspect", "--raw", *(access.args("") if access else []), reference,
                 what="cannot read image %s" % reference)
    data = raw.encode()
    return "sha256:" + hashlib.sha256(data).hexdigest(), json.loads(raw)


def estimated_size(raw, reference, access=None):
    """Bytes an image will take (layers + config), read from its manifest(s) without copying."""
    if "manifests" in raw:  # a list: add up every instance
        total = 0
        repo = reference.rsplit("@", 1)[0].rsplit(":", 1)[0] if reference.startswith("docker://") else None
        for instance in raw["manifests"]:
            if not repo:
                return None
            _, child = raw_digest("%s@%s" % (repo, instance["digest"]), access)
            total += estimated_size(child, reference, access) or 0
        return total
    return sum(layer.get("size", 0) for layer in raw.get("layers", [])) + raw.get("config", {}).get("size", 0)


def copy_to_layout(reference, layout, tag, access=None, all_platforms=True):
    """Copy an image into an OCI layout folder; returns the digest stored there."""
    if os.path.exists(layout):
        shutil.rmtree(layout)
    os.makedirs(os.path.dirname(layout), exist_ok=True)
    skopeo("copy", "--quiet", "--preserve-digests", "--retry-times", "3",
           *(["--multi-arch", "all"] if all_platforms else []),
           *(access.args("src") if access else []), reference, "oci:%s:%s" % (layout, tag),
           what="cannot copy image %s" % reference)
    return layout_digest(layout)


def layout_digest(layout):
    with open(os.path.join(layout, "index.json"), encoding="utf-8") as handle:
        manifests = json.load(handle)["manifests"]
    if len(manifests) != 1:
        raise KitchenError("%s: an image layout of the bundle holds exactly one image, found %d"
                          % (layout, len(manifests)))
    return manifests[0]["digest"]


def layout_files(layout):
    """Relative paths of every file of an OCI layout."""
    out = []
    for folder, _, files in os.walk(layout):
        for name in files:
            out.append(os.path.relpath(os.path.join(folder, name), layout))
    return sorted(out)


def registry_has(target, digest, access):
    """True when the registry serves `target` (host/repo) by this digest."""
    try:
        found, _ = raw_digest("docker://%s@%s" % (target, digest), access)
    except KitchenError as exc:
        text = str(exc).lower()
        if "manifest unknown" in text or "not found" in text or "name unknown" in text:
            return False
        raise
    return found == digest


def push_layout(layout, tag, target, digest, access):
    """Push an OCI layout to host/repo:tag keeping its digest; checks what the registry stored."""
    handle, digestfile = tempfile.mkstemp(prefix="kitchen-digest-")
    os.close(handle)
    try:
        skopeo("copy", "--quiet", "--preserve-digests", "--all", "--retry-times", "3", "--digestfile", digestfile,
               *access.args("dest"), "oci:%s:%s" % (layout, tag), "docker://%s:%s" % (target, tag),
               what="cannot push image to %s" % target)
        with open(digestfile, encoding="utf-8") as stream:
            pushed = stream.read().strip()
    finally:
        os.unlink(digestfile)
    if pushed != digest:
        raise KitchenError("%s: the registry stored digest %s, the bundle has %s" % (target, pushed, digest))
