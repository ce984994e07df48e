# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Flavours (versioned LoRA adapters on one resident base model): fetch from S3 or the bundle,
gate against the base model and prepare for the server (flavour_decide evaluates, switches and
rolls back).

All flavours are handled in one call each (no task per adapter), and the serving state is one
JSON file written atomically, only after every check passed:

    {"ready":   {flavour: {version: {"path": ..., "sha256": ..., "digest": ...}}},
     "serving": {flavour: {"version": ..., "previous": [older versions, last = most recent]}}}

"ready" lists the versions fetched, gated and prepared; the model server offers each as
"<flavour>@<version>" (so a candidate is evaluated before it is switched to). "serving" is
what "<flavour>" answers with, and where a rollback returns to.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.privateai.kitchen.plugins.module_utils.files import atomic_write
from ansible_collections.privateai.kitchen.plugins.module_utils.lora_adapter import sha256_file
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import iter_files, load_manifest
from ansible_collections.privateai.kitchen.plugins.module_utils.flavour_checks import FlavourError
from ansible_collections.privateai.kitchen.plugins.module_utils.lora_adapter import (
    GGUF_ADAPTER, AdapterError, BaseModel, check_adapter, to_gguf)

STATE_FILE = "state.json"


def load_state(path):
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        state = {}
    except ValueError as exc:
        raise FlavourError("%s is damaged (%s); restore it from a backup or remove it to publish afresh" % (path, exc))
    state.setdefault("ready", {})
    state.setdefault("serving", {})
    return state


def save_state(path, state):
    atomic_write(path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())


def bundle_files(bundle_dir):
    """{(kind, name, version): {relative file: (sha256, size, bundle path)}} of a bundle."""
    manifest, _ = load_manifest(bundle_dir)
    found = {}
    for kind, item, entry in iter_files(manifest):
        if kind not in ("models", "adapters", "eval_sets"):
            continue
        prefix = {"models": "models/%s" % item["name"], "eval_sets": "eval/%s" % item["name"],
                  "adapters": "adapters/%s/%s" % (item["name"], item.get("version", ""))}[kind]
        relative = os.path.relpath(entry["path"], prefix)
        found.setdefault((kind, item["name"], item.get("version", "")), {})[relative] = (
            entry["sha256"], entry["size"], os.path.join(bundle_dir, entry["volume"], entry["path"]))
    return found


def _fetch_all(jobs, client, concurrency=8):
    """jobs: (bucket, key, target, sha256). Downloads what is missing or different locally."""
    from botocore.exceptions import BotoCoreError, ClientError

    def one(job):
        bucket, key, target, sha256 = job
        if os.path.isfile(target) and sha256_file(target) == sha256:
            return None
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = target + ".partial"
        try:
            client.download_file(bucket, key, partial)
        except (BotoCoreError, ClientError) as exc:
            return "!s3://%s/%s: %s" % (bucket, key, exc)
        got = sha256_file(partial)
        if got != sha256:
            os.unlink(partial)
            return "!s3://%s/%s has sha256 %s, the bundle recorded %s" % (bucket, key, got, sha256)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
        return key

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, jobs))


def prepare(flavours, models, bundle_dir, model_dir, dest, max_rank, server_format, client=None, buckets=None,
            check_mode=False):
    """Fetch (from S3 when a client is given, else from the bundle), gate and prepare every
    declared version of every flavour. Raises FlavourError listing every refusal; only when
    all pass is the state's "ready" part rewritten. Returns a result dict."""
    files = bundle_files(bundle_dir)
    by_name = {m["name"]: m for m in models}
    refusals, fetch_jobs, plans = [], [], []
    bases = {}
    for flavour in flavours:
        name = flavour["name"]
        model = by_name.get(flavour["base_model"])
        if model is None:
            refusals.append("%s: base_model %r is not in kitchen_models (%s)"
                            % (name, flavour["base_model"], ", ".join(sorted(by_name))))
            continue
        if flavour["serving_version"] not in flavour["versions"]:
            refusals.append("%s: serving_version %s is not one of its versions (%s)"
                            % (name, flavour["serving_version"], ", ".join(flavour["versions"])))
        for version in flavour["versions"]:
            expected = files.get(("adapters", name, version))
            if expected is None:
                refusals.append("%s %s: not in the bundle at %s (add it to kitchen_bundle.adapters and import again)"
                                % (name, version, bundle_dir))
                continue
            folder = os.path.join(dest, name, version, "peft")
            for relative, (sha256, _size, source) in sorted(expected.items()):
                target = os.path.join(folder, relative)
                if client is not None:
                    fetch_jobs.append((buckets["adapters"], "lora/%s/%s/%s" % (name, version, relative), target, sha256))
                else:
                    fetch_jobs.append((None, source, target, sha256))
            plans.append((flavour, version, model, folder, {r: s for r, (s, _, _) in expected.items()}))
        if flavour.get("eval_set"):
            eval_name, _, eval_file = flavour["eval_set"].partition("/")
            expected = files.get(("eval_sets", eval_name, ""), {}).get(eval_file)
            if expected is None:
                refusals.append("%s: eval_set %s is not in the bundle (an eval set <name> with the file <file>)"
                                % (name, flavour["eval_set"]))
            else:
                target = os.path.join(dest, ".eval", eval_name, eval_file)
                job = ((buckets["eval"], "%s/%s" % (eval_name, eval_file), target, expected[0]) if client is not None
                       else (None, expected[2], target, expected[0]))
                if job not in fetch_jobs:
                    fetch_jobs.append(job)
    if refusals:
        raise FlavourError("refused before anything changed:\n- " + "\n- ".join(refusals))

    fetched, started = [], time.monotonic()
    if not check_mode:
        s3_jobs = [j for j in fetch_jobs if j[0] is not None]
        local_jobs = [j for j in fetch_jobs if j[0] is None]
        results = _fetch_all(s3_jobs, client) if s3_jobs else []
        results += [_copy_verified(j) for j in local_jobs]
        errors = [r for r in results if r and r.startswith("!")]
        if errors:
            raise FlavourError("fetching the adapters failed:\n- " + "\n- ".join(e.lstrip("!") for e in errors))
        fetched = [r for r in results if r]

    fetch_seconds, convert_seconds = time.monotonic() - started, 0.0
    previous_ready = load_state(os.path.join(dest, STATE_FILE))["ready"]
    refused, prepared, ready = [], [], {}
    for flavour, version, model, folder, expected in plans:
        name = flavour["name"]
        base = bases.get(model["name"])
        if base is None:
            model_files = files.get(("models", model["name"], ""), {})
            # Without a model folder (OpenShift: the model lives on a PVC), the bundle's own copy.
            paths = [os.path.join(model_dir, model["name"], r) if model_dir else model_files[r][2]
                     for r in sorted(model_files)]
            accepted = [model["name"]] + ([model["upstream_name"]] if model.get("upstream_name") else [])
            try:
                base = bases[model["name"]] = BaseModel.from_files(
                    model["name"], accepted, paths, {r: s for r, (s, _, _) in model_files.items()})
            except AdapterError as exc:
                raise FlavourError("%s: %s" % (name, exc)) from None
        if check_mode and not os.path.isdir(folder):
            continue
        # The fetch above checked every file's sha256 against the bundle; the gate reads headers.
        reasons = check_adapter(folder, base, max_rank)
        if reasons:
            refused.append("%s %s refused: %s" % (name, version, "; ".join(reasons)))
            continue
        entry = {"digest": _digest(expected), "base_model": model["name"],
                 "base_sha256": sorted(base.sha256s.values())}
        if server_format == "gguf":
            target = os.path.join(dest, name, version, GGUF_ADAPTER)
            known = previous_ready.get(name, {}).get(version, {})
            converting = time.monotonic()
            if (known.get("digest") == entry["digest"] and known.get("base_sha256") == entry["base_sha256"]
                    and os.path.isfile(target) and sha256_file(target) == known.get("sha256")):
                entry.update(path=known["path"], sha256=known["sha256"])  # converted from these very files
                convert_seconds += time.monotonic() - converting
            elif not check_mode:
                try:
                    if to_gguf(folder, target, base.architecture):
                        prepared.append("%s %s" % (name, version))
                except (AdapterError, KeyError, ValueError) as exc:
                    refused.append("%s %s refused: cannot convert for llama.cpp: %s" % (name, version, exc))
                    continue
                convert_seconds += time.monotonic() - converting
                os.chmod(target, 0o644)
                entry.update(path=os.path.relpath(target, dest), sha256=sha256_file(target))
        else:
            # vLLM loads the PEFT folder itself; its files' sha256 let the cluster verify its copy.
            entry.update(path=os.path.relpath(folder, dest), sha256=entry["digest"], files=dict(sorted(expected.items())))
        ready.setdefault(name, {})[version] = entry
    if refused:
        raise FlavourError("refused before anything changed (the flavours in service keep serving):\n- "
                           + "\n- ".join(refused))

    state_path = os.path.join(dest, STATE_FILE)
    state = load_state(state_path)
    changed = bool(fetched or prepared) or state["ready"] != ready
    if changed and not check_mode:
        state["ready"] = ready
        save_state(state_path, state)
    return {"changed": changed, "fetched": fetched, "prepared": prepared, "ready": ready,
            "gated": sum(len(v) for v in ready.values()),
            # Time spent on bytes (fetching and hashing, converting): what a benchmark sets apart.
            "timings": {"fetch_seconds": round(fetch_seconds, 3), "convert_seconds": round(convert_seconds, 3)}}


def _copy_verified(job):
    _, source, target, sha256 = job
    if os.path.isfile(target) and sha256_file(target) == sha256:
        return None
    if sha256_file(source) != sha256:
        return "!%s has sha256 %s, the bundle recorded %s" % (source, sha256_file(source), sha256)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(source, "rb") as handle:
        atomic_write(target, handle.read())
    return target


def _digest(expected):
    import hashlib
    text = "".join("%s  %s\n" % (sha256, name) for name, sha256 in sorted(expected.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
