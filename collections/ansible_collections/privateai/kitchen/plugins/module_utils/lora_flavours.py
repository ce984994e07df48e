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
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_files import atomic_write
from ansible_collections.privateai.kitchen.plugins.module_utils.lora_adapter import sha256_file
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import iter_files, load_manifest
from ansible_collections.privateai.kitchen.plugins.module_utils.lora_adapter import (
    GGUF_ADAPTER, AdapterError, BaseModel, check_adapter, to_gguf)

STATE_FILE = "state.json"
EVAL_FORMAT = 1


class FlavourError(Exception):
    """Refused: the message names the flavour, version and reason."""


def candidate_name(flavour, version):
    return "%s@%s" % (flavour, version)


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

def read_eval_set(path):
    """Cases of an evaluation set (JSONL): prompt, and any of expect (all of these words),
    expect_any (one of these words), pattern (a regular expression); max_tokens optional."""
    cases = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = "%s line %d" % (path, number)
            try:
                case = json.loads(line)
            except ValueError as exc:
                raise FlavourError("%s: not JSON (%s)" % (where, exc)) from None
            if not isinstance(case, dict) or not isinstance(case.get("prompt"), str) or not case["prompt"]:
                raise FlavourError("%s: prompt must be a non-empty string" % where)
            unknown = set(case) - {"prompt", "expect", "expect_any", "pattern", "max_tokens"}
            if unknown:
                raise FlavourError("%s: unknown field(s) %s" % (where, ", ".join(sorted(unknown))))
            for field in ("expect", "expect_any"):
                if field in case and not (isinstance(case[field], list) and all(isinstance(w, str) for w in case[field])):
                    raise FlavourError("%s: %s must be a list of strings" % (where, field))
            if "pattern" in case:
                try:
                    re.compile(case["pattern"])
                except (re.error, TypeError) as exc:
                    raise FlavourError("%s: pattern %r is not a regular expression (%s)" % (where, case["pattern"], exc)) from None
            if not any(f in case for f in ("expect", "expect_any", "pattern")):
                raise FlavourError("%s: give expect, expect_any or pattern" % where)
            cases.append(case)
    if not cases:
        raise FlavourError("%s holds no cases" % path)
    return cases


def passes(case, text):
    lowered = text.lower()
    if any(word.lower() not in lowered for word in case.get("expect", [])):
        return False
    if case.get("expect_any") and not any(word.lower() in lowered for word in case["expect_any"]):
        return False
    if "pattern" in case and not re.search(case["pattern"], text, re.IGNORECASE):
        return False
    return True


def chat(url, model, prompt, max_tokens, timeout=180):
    """One chat completion at temperature 0: (text, seconds, served model)."""
    body = json.dumps({"model": model, "temperature": 0, "max_tokens": max_tokens, "seed": 0,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
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
    outcomes, latencies = [], []
    for case in cases:
        text, seconds, _ = chat(url, served_name, case["prompt"], case.get("max_tokens", max_tokens))
        latencies.append(seconds)
        outcomes.append({"prompt": case["prompt"], "passed": passes(case, text), "text": text[:200]})
    latencies.sort()
    passed = sum(o["passed"] for o in outcomes)
    return {"passed": passed, "total": len(outcomes), "pass_rate": round(passed / len(outcomes), 4),
            "latency_p50_seconds": round(latencies[len(latencies) // 2], 3),
            "latency_max_seconds": round(latencies[-1], 3),
            "failures": [o for o in outcomes if not o["passed"]][:5]}


def decide(url, flavours, dest, tolerance, force=False, rollback=(), max_tokens=48, check_mode=False, now=None,
           serving_state=None):
    """Evaluate what is to be served and switch the state. Raises FlavourError (nothing
    written) when a version scores worse than the one in service by more than tolerance,
    unless force. rollback: flavour names (or "all") to return to their previous version.
    url None: no evaluation (OpenShift in this release), the same switch and rollback rules.
    serving_state: {flavour: {version, previous}} kept elsewhere (a ConfigMap in the cluster),
    used instead of the state file's."""
    state_path = os.path.join(dest, STATE_FILE)
    state = load_state(state_path)
    if serving_state is not None:
        state["serving"] = copy.deepcopy(serving_state)
    declared = {f["name"]: f for f in flavours}
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
                results[(name, version)] = _evaluation(url, declared[name], version, state, dest, max_tokens, check_mode)
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
        raise FlavourError("refused, nothing switched (to switch anyway: -e local_lora_force=true):\n- " + "\n- ".join(refusals))

    for name, entry in state["serving"].items():
        if name in declared and (name, entry["version"]) not in results:
            # Not looked at in this run: its stored evaluation, for the report.
            results[(name, entry["version"])] = _evaluation(url, declared[name], entry["version"], state, dest,
                                                            max_tokens, check_mode=True)
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
    return {"changed": bool(plan or retired), "switches": switches, "retired": retired, "serving": serving,
            "evaluations": [dict(r, flavour=n, version=v) for (n, v), r in sorted(results.items()) if r],
            "previous": {n: e.get("previous", []) for n, e in state["serving"].items()}}


def _evaluation(url, flavour, version, state, dest, max_tokens, check_mode):
    """The stored evaluation of a version, or a new one (stored) when what it measured changed."""
    if not flavour.get("eval_set") or url is None:
        return None
    eval_name, _, eval_file = flavour["eval_set"].partition("/")
    eval_path = os.path.join(dest, ".eval", eval_name, eval_file)
    ready = state["ready"][flavour["name"]][version]
    identity = {"adapter": ready["sha256"], "eval_set": sha256_file(eval_path), "base": ready.get("base_sha256"),
                "max_tokens": max_tokens, "format": EVAL_FORMAT}
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
