# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""The collection's file work: sha256 at disk speed, atomic writes, verified copies, and the
progress long runs report; the error type every module of the collection raises.

Hashing: hashlib releases the GIL while it digests a large buffer, so threads hash several
files at once on several cores with no process start-up or pickling; one file is read in
large blocks into a reused buffer. A single file cannot be hashed in parallel (SHA-256 is
sequential), so the gain comes from bundles of many files (model shards, image layers).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

BLOCK = 4 * 1024 * 1024

# Options of every bundle module (documented in doc_fragments/bundle.py).
COMMON_ARGS = dict(workers=dict(type="int"), progress_file=dict(type="path"))


class KitchenError(Exception):
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


def read_json(path):
    """The JSON document at `path`, or None when it is missing or unreadable (a fetch's
    marker of what it left: anything else means fetching again)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def remove_unlisted(folder, keep):
    """Delete the files below `folder` whose relative path is not in `keep`; hidden files and
    folders (markers, partial downloads) stay."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), folder)
            if not name.startswith(".") and relative not in keep:
                os.unlink(os.path.join(root, name))


def copy_verified(source, target, expected):
    """Copy source to target, hashing the copy; the target appears only once its sha256 is right."""
    import shutil

    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = target + ".kitchen-partial"
    shutil.copyfile(source, temporary)
    found, _ = sha256_file(temporary)
    if found != expected:
        os.unlink(temporary)
        raise KitchenError("%s: sha256 %s after copying to %s, expected %s: the source changed or the disk "
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
