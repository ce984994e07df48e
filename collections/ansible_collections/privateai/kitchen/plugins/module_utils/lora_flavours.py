# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Flavours (versioned LoRA adapters on one resident base model): fetch from S3, gate,
prepare for the server, evaluate, switch and roll back.

All flavours are handled in one call each (no task per adapter), and the serving state is one
JSON file written atomically, only after every check passed:

    {"ready":   {flavour: {version: {"path": ..., "sha256": ..., "digest": ...}}},
     "serving": {flavour: {"version": ..., "previous": [older versions, last = most recent]}}}

"ready" lists the versions fetched, gated and prepared; the model server offers each as
"<flavour>@<version>" (so a candidate is evaluated before it is switched to). "serving" is
what "<flavour>" answers with, and where a rollback returns to.
"""

from __future__ import annotations

import copy
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_files import atomic_write
from ansible_collections.privateai.kitchen.plugins.module_utils.lora_adapter import sha256_file
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import iter_files, load_manifest
from ansible_collections.privateai.kitchen.plugins.module_utils.flavour_checks import (  # noqa: F401 - re-exported
    FlavourError, candidate_name, chat_body, passes, read_eval_set, score)
from ansible_collections.privateai.kitchen.plugins.module_utils.lora_adapter import (
    GGUF_ADAPTER, AdapterError, BaseModel, check_adapter, to_gguf)

STATE_FILE = "state.json"
EVAL_FORMAT = 1


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


# ---- evaluation --------------------------------------------------------------------------

def chat(url, model, prompt, max_tokens, timeout=180):
    """One chat completion at temperature 0: (text, seconds, served model)."""
    body = json.dumps(chat_body(model, prompt, max_tokens)).encode()
    request = urllib.request.Request(url.rstrip("/") + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FlavourError("model %s at %s: %s" % (model, url, exc)) from None
    return answer["choices"][0]["message"]["content"] or "", time.monotonic() - started, answer.get("model", "")


def evaluate(url, served_name, cases, max_tokens):
    return score(cases, lambda prompt, tokens: chat(url, served_name, prompt, tokens)[:2], max_tokens)


def decide(url, flavours, dest, tolerance, force=False, rollback=(), max_tokens=48, check_mode=False, now=None,
           serving_state=None, measured=None, force_variable="local_lora_force"):
    """Evaluate what is to be served and switch the state. Raises FlavourError (nothing
    written) when a version scores worse than the one in service by more than tolerance,
    unless force. rollback: flavour names (or "all") to return to their previous version.
    url None: nothing is asked here; the same switch and rollback rules.
    serving_state: {flavour: {version, previous}} kept elsewhere (a ConfigMap in the cluster),
    used instead of the state file's.
    measured: evaluations kept elsewhere {flavour: {version: {identity, result}}} (with url
    None: an evaluation Job in the cluster measured them); one counts while its identity is
    the version's. A version looked at with an evaluation set but no result counting is listed
    in "unevaluated" with its identity (what to measure next, and what to keep it under)."""
    state_path = os.path.join(dest, STATE_FILE)
    state = load_state(state_path)
    if serving_state is not None:
        state["serving"] = copy.deepcopy(serving_state)
    declared = {f["name"]: f for f in flavours}
    kept = None
    if measured is not None:
        # Only declared, prepared versions: what was retired leaves the store.
        kept = {n: {v: e for v, e in versions.items() if v in state["ready"].get(n, {})}
                for n, versions in copy.deepcopy(measured).items() if n in declared}
    unevaluated = []

    def evaluation(flavour, version, peek=False):
        if kept is None:
            return _evaluation(url, flavour, version, state, dest, max_tokens, check_mode or peek)
        if not flavour.get("eval_set"):
            return None
        identity = _identity(flavour, version, state, dest, max_tokens)
        entry = kept.get(flavour["name"], {}).get(version)
        if entry and entry.get("identity") == identity:
            return entry["result"]
        if not peek:
            unevaluated.append({"flavour": flavour["name"], "version": version, "eval_set": flavour["eval_set"],
                                "candidate": candidate_name(flavour["name"], version), "identity": identity})
        return None
    if rollback:
        names = sorted(declared) if "all" in rollback else list(rollback)
        unknown = [n for n in names if n not in declared]
        if unknown:
            raise FlavourError("rollback: %s not declared in kitchen_adapters (%s)"
                               % (", ".join(unknown), ", ".join(sorted(declared))))
        lacking = [n for n in names if not state["serving"].get(n, {}).get("previous")]
        if lacking and "all" not in rollback:
            raise FlavourError("rollback: %s never served another version; nothing to return to" % ", ".join(lacking))
        targets = {n: state["serving"][n]["previous"][-1] for n in names if n not in lacking}
    else:
        targets = {n: f["serving_version"] for n, f in declared.items()}

    results, refusals, switches, plan = {}, [], [], {}
    for name, target in sorted(targets.items()):
        current = state["serving"].get(name, {}).get("version")
        if target not in state["ready"].get(name, {}):
            raise FlavourError("%s %s: not prepared (run phase 3 first)" % (name, target))
        for version in [v for v in (current, target) if v]:
            if (name, version) not in results and version in state["ready"].get(name, {}):
                results[(name, version)] = evaluation(declared[name], version)
        if target == current:
            continue
        new, old = results[(name, target)], results.get((name, current))
        forced = False
        if new and old and new["pass_rate"] < old["pass_rate"] - tolerance:
            message = ("%s %s scores %.0f%% (%d/%d), %s in service scores %.0f%%: more than the tolerance %.0f%% worse"
                       % (name, target, 100 * new["pass_rate"], new["passed"], new["total"], current,
                          100 * old["pass_rate"], 100 * tolerance))
            if not force:
                refusals.append(message + "; failing prompts: " + "; ".join(
                    "%r -> %r" % (f["prompt"], f["text"][:60]) for f in new["failures"][:2]))
                continue
            forced = True
        plan[name] = (current, target)
        switches.append({"flavour": name, "from": current, "to": target, "forced": forced,
                         "pass_rate_from": old["pass_rate"] if old else None,
                         "pass_rate_to": new["pass_rate"] if new else None})
    if refusals:
        raise FlavourError("refused, nothing switched (to switch anyway: -e %s=true):\n- %s"
                           % (force_variable, "\n- ".join(refusals)))

    for name, entry in state["serving"].items():
        if name in declared and (name, entry["version"]) not in results:
            # Not looked at in this run: its stored evaluation, for the report.
            results[(name, entry["version"])] = evaluation(declared[name], entry["version"], peek=True)
    retired = sorted(n for n in state["serving"] if n not in declared)
    # Check mode reports what a real run would leave in service, and writes nothing.
    for name, (current, target) in plan.items():
        entry = state["serving"].setdefault(name, {"previous": []})
        if rollback:
            entry["previous"] = entry["previous"][:-1]
        elif current:
            entry["previous"] = [v for v in entry["previous"] if v != current] + [current]
        entry["version"] = target
    for name in retired:
        del state["serving"][name]
    if (plan or retired or serving_state is not None) and not check_mode:
        save_state(state_path, state)
    serving = {n: e["version"] for n, e in state["serving"].items()}
    result = {"changed": bool(plan or retired), "switches": switches, "retired": retired, "serving": serving,
              "evaluations": [dict(r, flavour=n, version=v) for (n, v), r in sorted(results.items()) if r],
              "previous": {n: e.get("previous", []) for n, e in state["serving"].items()}}
    if kept is not None:
        result.update(measured=kept, unevaluated=unevaluated)
    return result


def _identity(flavour, version, state, dest, max_tokens):
    """What an evaluation measured: the adapter, the evaluation set, the base model and the
    answer length. A stored result counts while all of these are unchanged."""
    eval_name, _, eval_file = flavour["eval_set"].partition("/")
    ready = state["ready"][flavour["name"]][version]
    return {"adapter": ready["sha256"], "eval_set": sha256_file(os.path.join(dest, ".eval", eval_name, eval_file)),
            "base": ready.get("base_sha256"), "max_tokens": max_tokens, "format": EVAL_FORMAT}


def _evaluation(url, flavour, version, state, dest, max_tokens, check_mode):
    """The stored evaluation of a version, or a new one (stored) when what it measured changed."""
    if not flavour.get("eval_set") or url is None:
        return None
    eval_name, _, eval_file = flavour["eval_set"].partition("/")
    eval_path = os.path.join(dest, ".eval", eval_name, eval_file)
    identity = _identity(flavour, version, state, dest, max_tokens)
    stored_path = os.path.join(dest, ".results", flavour["name"], version + ".json")
    try:
        with open(stored_path, encoding="utf-8") as handle:
            stored = json.load(handle)
        if stored.get("identity") == identity:
            return stored["result"]
    except (FileNotFoundError, ValueError):
        pass
    if check_mode:
        return None
    result = evaluate(url, candidate_name(flavour["name"], version), read_eval_set(eval_path), max_tokens)
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.makedirs(os.path.dirname(stored_path), exist_ok=True)
    atomic_write(stored_path, (json.dumps({"identity": identity, "result": result}, indent=2, sort_keys=True) + "\n").encode())
    return result


def prove(url, base_name, flavours, prompt, max_tokens):
    """Per request, per flavour: the flavour answers twice alike at temperature 0 and not as
    the base does. Asked flavour, base, flavour, so on llama.cpp each answer starts from a
    freshly loaded model rather than from the previous request's cached prompt."""
    proofs = []
    for name in flavours:
        first, _, served = chat(url, name, prompt, max_tokens)
        base, _, _ = chat(url, base_name, prompt, max_tokens)
        second, _, _ = chat(url, name, prompt, max_tokens)
        proofs.append({"flavour": name, "served_as": served, "repeatable": first == second,
                       "differs_from_base": first != base, "text": first[:160], "base_text": base[:160]})
    return proofs
