# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Files of an air-gap bundle: hashing at disk speed, and the content checks that catch a
broken model, adapter or certificate before it is carried across the gap.

Hashing: hashlib releases the GIL while it digests a large buffer, so threads hash several
files at once on several cores with no process start-up or pickling; one file is read in
large blocks into a reused buffer. A single file cannot be hashed in parallel (SHA-256 is
sequential), so the gain comes from bundles of many files (model shards, image layers).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import struct
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

BLOCK = 4 * 1024 * 1024

# Options of every bundle module (documented in doc_fragments/bundle.py).
COMMON_ARGS = dict(workers=dict(type="int"), progress_file=dict(type="path"))


class BundleError(Exception):
    """A problem the user must fix; the message names the item, the field and the value."""


def sha256_file(path, progress=None, block=BLOCK):
    """sha256 hex digest and size of a file; progress(bytes) is called after every block."""
    digest = hashlib.sha256()
    buffer = bytearray(block)
    view = memoryview(buffer)
    size = 0
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            size += count
            if progress:
                progress(count)
    return digest.hexdigest(), size


def atomic_write(path, data: bytes, mode=0o644):
    """Write or replace a file atomically (a reader never sees half of it); False when it
    already holds exactly `data`, which is then left untouched."""
    try:
        with open(path, "rb") as handle:
            if handle.read() == data:
                return False
    except FileNotFoundError:
        pass
    directory = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".kitchen-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return True


def copy_verified(source, target, expected):
    """Copy source to target, hashing the copy; the target appears only once its sha256 is right."""
    import shutil

    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = target + ".kitchen-partial"
    shutil.copyfile(source, temporary)
    found, _ = sha256_file(temporary)
    if found != expected:
        os.unlink(temporary)
        raise BundleError("%s: sha256 %s after copying to %s, expected %s: the source changed or the disk "
                          "is damaged; nothing was placed" % (source, found, target, expected))
    os.replace(temporary, target)


def default_workers():
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Progress:
    """Thread-safe byte counter; report(done, total) is called at most every `step` bytes."""

    def __init__(self, total, report=None, step=64 * 1024 * 1024):
        self.total = total
        self.done = 0
        self._report = report
        self._step = step
        self._next = step
        self._lock = threading.Lock()

    def __call__(self, count):
        if not self._report:
            return
        with self._lock:
            self.done += count
            if self.done >= self._next or self.done >= self.total:
                self._next = self.done + self._step
                self._report(self.done, self.total)


class ProgressFile:
    """How far a long module run is, as one small JSON document replaced atomically.

    A module cannot talk to the controller while it runs; run asynchronously, it writes
    here and the bundle_wait action shows the stage, bytes done and rate as they change.
    stage() starts a step (with its byte total, 0 when unknown), advance() is a Progress
    report. Without a path it does nothing.
    """

    step = 64 * 1024 * 1024  # bytes between two advance() calls of a Progress

    def __init__(self, path=None, min_interval=0.5):
        self.path = path
        self.min_interval = min_interval
        self._stage, self._total, self._done = None, 0, 0
        self._started = self._written = 0.0
        self._lock = threading.Lock()

    def stage(self, text, total=0):
        with self._lock:
            self._stage, self._total, self._done = text, total, 0
            self._started = time.monotonic()
            self._write(force=True)

    def advance(self, done, total):
        with self._lock:
            self._done, self._total = done, total
            self._write(force=done >= total)

    def _write(self, force):
        now = time.monotonic()
        if not self.path or (not force and now - self._written < self.min_interval):
            return
        self._written = now
        state = {"stage": self._stage, "done": self._done, "total": self._total,
                 "seconds": round(now - self._started, 2)}
        atomic_write(self.path, json.dumps(state).encode(), mode=0o600)


def verify_files(entries, root_of, workers=None, report=None):
    """Check every file of `entries` (dicts with path, size, sha256) in parallel.

    root_of(entry) gives the folder the entry's path is relative to. Returns the list of
    problems, every one of them (missing, truncated, grown, wrong sha256), in entry order.
    Sizes are compared first, so a missing or truncated file costs no hashing.
    """
    problems = [None] * len(entries)
    to_hash = []
    for index, entry in enumerate(entries):
        path = os.path.join(root_of(entry), entry["path"])
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            problems[index] = "%s: missing" % path
            continue
        if size != entry["size"]:
            problems[index] = "%s: %d bytes, expected %d (%s)" % (
                path, size, entry["size"], "truncated" if size < entry["size"] else "grown")
            continue
        to_hash.append((index, path, entry))
    progress = Progress(sum(e["size"] for _, _, e in to_hash), report)
    # Largest first: the pool never waits on one big file started last.
    to_hash.sort(key=lambda item: -item[2]["size"])

    def check(item):
        index, path, entry = item
        found, _ = sha256_file(path, progress)
        if found != entry["sha256"]:
            problems[index] = "%s: sha256 %s, expected %s" % (path, found, entry["sha256"])

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        list(pool.map(check, to_hash))
    return [p for p in problems if p]


def hash_files(paths, workers=None, report=None):
    """{path: (sha256, size)} of many files, in parallel."""
    progress = Progress(sum(os.path.getsize(p) for p in paths), report)

    def one(path):
        return path, sha256_file(path, progress)

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        return dict(pool.map(one, sorted(paths, key=lambda p: -os.path.getsize(p))))


# --- content checks (connected side, before anything is bundled) -------------------------

def check_safetensors(path):
    """A safetensors file's header must describe exactly the bytes that follow it."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise BundleError("%s: not a safetensors file (%d bytes)" % (path, size))
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, 100 * 1024 * 1024):
            raise BundleError("%s: safetensors header length %d does not fit the file (%d bytes)"
                              % (path, header_len, size))
        try:
            header = json.loads(handle.read(header_len))
        except ValueError as exc:
            raise BundleError("%s: safetensors header is not JSON: %s" % (path, exc)) from None
    end = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = tensor["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise BundleError("%s: tensor %r has no data_offsets" % (path, name)) from None
        end = max(end, stop)
    expected = 8 + header_len + end
    if expected != size:
        raise BundleError("%s: safetensors header describes %d bytes but the file has %d (%s)"
                          % (path, expected, size, "truncated" if size < expected else "trailing data"))
    return {name: tensor for name, tensor in header.items() if name != "__metadata__"}


def check_gguf(path):
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise BundleError("%s: not a GGUF file (magic %r)" % (path, magic))


def check_model_dir(name, directory, files):
    """Content checks of a base model's files (relative names); returns tensor names found."""
    tensors = set()
    for rel in files:
        path = os.path.join(directory, rel)
        if rel.endswith(".safetensors"):
            tensors.update(check_safetensors(path))
        elif rel.endswith(".gguf"):
            check_gguf(path)
    for rel in files:
        if not rel.endswith(".safetensors.index.json"):
            continue
        with open(os.path.join(directory, rel), encoding="utf-8") as handle:
            weight_map = json.load(handle).get("weight_map") or {}
        missing = sorted(set(weight_map.values()) - set(files))
        if missing:
            raise BundleError("model %s: %s names shards that are not there: %s"
                              % (name, rel, ", ".join(missing)))
    shards = sorted(f for f in files if re.search(r"-\d{5}-of-\d{5}\.safetensors$", f))
    if shards and not any(f.endswith(".safetensors.index.json") for f in files):
        raise BundleError("model %s: sharded weights (%s) but no model.safetensors.index.json: servers cannot "
                          "load them" % (name, ", ".join(shards)))
    if not any(f.endswith((".safetensors", ".gguf", ".bin")) for f in files):
        raise BundleError("model %s: no weights (*.safetensors, *.gguf) in %s" % (name, directory))
    return tensors


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def read_adapter(label, directory):
    """The PEFT facts of a LoRA adapter folder: rank, alpha, target modules, base model."""
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not os.path.isfile(os.path.join(directory, required)):
            raise BundleError("adapter %s: %s is missing in %s" % (label, required, directory))
    try:
        with open(os.path.join(directory, ADAPTER_CONFIG), encoding="utf-8") as handle:
            config = json.load(handle)
    except ValueError as exc:
        raise BundleError("adapter %s: %s is not JSON: %s" % (label, ADAPTER_CONFIG, exc)) from None
    if config.get("peft_type", "LORA") != "LORA":
        raise BundleError("adapter %s: peft_type is %r, expected 'LORA'" % (label, config.get("peft_type")))
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise BundleError("adapter %s: %s r is %r, expected a positive integer" % (label, ADAPTER_CONFIG, rank))
    targets = config.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]
    if not targets:
        raise BundleError("adapter %s: %s has no target_modules" % (label, ADAPTER_CONFIG))
    check_safetensors(os.path.join(directory, ADAPTER_WEIGHTS))
    return {
        "rank": rank,
        "alpha": config.get("lora_alpha"),
        "target_modules": sorted(targets),
        "base_model_name_or_path": config.get("base_model_name_or_path"),
        "use_dora": bool(config.get("use_dora")),
        "modules_to_save": config.get("modules_to_save"),
    }


def certificate_facts(label, path, now=None):
    """Subject, SHA-256 fingerprint and validity of every certificate in a PEM file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    with open(path, "rb") as handle:
        data = handle.read()
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise BundleError("CA %s: %s holds no PEM certificate: %s" % (label, path, exc)) from None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    facts = []
    for cert in certificates:
        not_after = cert.not_valid_after_utc
        facts.append({
            "subject": cert.subject.rfc4514_string(),
            "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
            "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
        if not_after < now:
            raise BundleError("CA %s: certificate %s in %s expired on %s"
                              % (label, cert.subject.rfc4514_string(), path, facts[-1]["not_after"]))
    return facts
