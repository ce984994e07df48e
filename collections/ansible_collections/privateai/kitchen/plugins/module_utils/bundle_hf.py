# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""A Hugging Face repository at a pinned commit, fetched with huggingface_hub into the
source cache (connected side).

The Hub endpoint is HF_ENDPOINT (or kitchen_bundle.source_hf.endpoint), the token HF_TOKEN
from the environment: never an argument, never in a message. Every file is checked against
the Hub's own listing at that commit (size; sha256 for LFS files, the git blob id for the
others), so what the bundle hashes is what the Hub published. A folder already fetched for
the same commit and patterns is used as it is, without a request.
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import canonical_json
from ansible_collections.privateai.kitchen.plugins.module_utils.files import (
    KitchenError,
    atomic_write,
    read_json,
    remove_unlisted,
)

MARKER = ".kitchen-hf.json"  # hidden: bundle sources skip hidden files (and huggingface_hub's .cache/)
# What vLLM needs of a repository: weights, configs, tokenizer; not READMEs, images or other formats.
DEFAULT_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.gguf"]


def _git_blob_oid(path):
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached(folder, wanted_key):
    """The files of an earlier fetch with the same key, when all are still there."""
    done = read_json(os.path.join(folder, MARKER)) or {}
    if done.get("key") != wanted_key:
        return None
    files = done.get("files", {})
    for name, entry in files.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or os.path.getsize(path) != entry["size"]:
            return None
    return files


def _use_ca_file(ca_file):
    """huggingface_hub's shared HTTP client, verifying against this CA (the host's trust
    store, or SSL_CERT_FILE, is the client's own default)."""
    import ssl

    import httpx2
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    context = ssl.create_default_context(cafile=ca_file)
    set_client_factory(lambda: httpx2.Client(event_hooks={"request": [_http.hf_request_event_hook]},
                                             follow_redirects=True, timeout=None, verify=context))


def fetch(label, repo, revision, folder, *, endpoint=None, ca_file=None, allow_patterns=None):
    """Make `folder` hold the files of hf://repo@revision matching allow_patterns (default:
    weights, configs, tokenizer). Returns (folder, [hf://... of each file downloaded])."""
    patterns = list(allow_patterns or DEFAULT_PATTERNS)
    source = "hf://%s@%s" % (repo, revision)
    key = {"repo": repo, "revision": revision, "allow_patterns": patterns}
    if _cached(folder, key) is not None:
        return folder, []
    where = endpoint or "the Hugging Face Hub"
    try:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.hf_api import RepoFile
        from huggingface_hub.utils import disable_progress_bars, filter_repo_objects
    except ImportError:
        raise KitchenError("%s: %s needs the Python package huggingface_hub (pyproject.toml pins it)"
                          % (label, source)) from None
    disable_progress_bars()
    if ca_file:
        _use_ca_file(ca_file)
    token = os.environ.get("HF_TOKEN") or None
    try:
        api = HfApi(endpoint=endpoint, token=token)
        tree = {f.path: f for f in api.list_repo_tree(repo, revision=revision, recursive=True)
                if isinstance(f, RepoFile)}
        wanted = sorted(filter_repo_objects(tree, allow_patterns=patterns))
        if not wanted:
            raise KitchenError("%s: %s has no file matching %s (of %d files)"
                              % (label, source, ", ".join(patterns), len(tree)))
        before = {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in wanted
                  if os.path.isfile(os.path.join(folder, n))}
        snapshot_download(repo, revision=revision, local_dir=folder, allow_patterns=wanted, endpoint=endpoint,
                          token=token, max_workers=4)
    except KitchenError:
        raise
    except Exception as exc:  # pylint: disable=broad-except  # the client's errors name no token
        raise KitchenError("%s: cannot fetch %s from %s: %s: %s" % (
            label, source, where, type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else ""))\
            from None

    files, problems = {}, []
    for name in wanted:
        entry, path = tree[name], os.path.join(folder, name)
        size = os.path.getsize(path) if os.path.isfile(path) else None
        if size != entry.size:
            problems.append("%s: %s bytes, the Hub lists %d" % (name, size, entry.size))
            continue
        if entry.lfs is not None:
            digest = _sha256(path)
            if digest != entry.lfs.sha256:
                problems.append("%s: sha256 %s, the Hub lists %s" % (name, digest, entry.lfs.sha256))
        elif _git_blob_oid(path) != entry.blob_id:
            problems.append("%s: git blob id differs from the Hub's %s" % (name, entry.blob_id))
        files[name] = {"size": size, "sha256": entry.lfs.sha256 if entry.lfs else None}
    if problems:
        raise KitchenError("%s: %s from %s does not match the Hub's listing: %s"
                          % (label, source, where, "; ".join(problems)))
    # Files of an earlier fetch with other patterns do not belong to this source any more.
    remove_unlisted(folder, files)
    atomic_write(os.path.join(folder, MARKER), canonical_json({"key": key, "files": files}))
    fetched = [n for n in wanted if before.get(n) != os.stat(os.path.join(folder, n)).st_mtime_ns]
    return folder, ["%s/%s" % (source, n) for n in fetched]
