# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""What each flavour serves: evaluate a version against the one in service, switch or roll
back by one set of rules (both platforms), and prove per request that a flavour answers as
itself. The serving state is flavour_prepare's state file, or what a cluster keeps."""

from __future__ import annotations

import copy
import json
import os
import time
import urllib.error
import urllib.request

from ansible_collections.privateai.kitchen.plugins.module_utils.files import atomic_write
from ansible_collections.privateai.kitchen.plugins.module_utils.flavour_checks import (
    FlavourError,
    candidate_name,
    chat_body,
    read_eval_set,
    score,
)
from ansible_collections.privateai.kitchen.plugins.module_utils.flavour_prepare import STATE_FILE, load_state, save_state
from ansible_collections.privateai.kitchen.plugins.module_utils.lora_adapter import sha256_file

EVAL_FORMAT = 1


def chat(url, model, prompt, max_tokens, timeout=180):
    """One chat completion at temperature 0: (text, seconds, served model)."""
    # llama-server reuses a slot's cached prompt and evaluates only its last token again, which
    # rounds differently from a whole prompt: asked afresh, the same request answers alike.
    body = json.dumps(dict(chat_body(model, prompt, max_tokens), cache_prompt=False)).encode()
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
    state, declared, kept = _inputs(flavours, dest, serving_state, measured)
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
    results, refusals, switches, chosen = {}, [], [], {}
    for name, current, target in _looked_at(declared, state, rollback):
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
        chosen[name] = (current, target)
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
    for name, (current, target) in chosen.items():
        entry = state["serving"].setdefault(name, {"previous": []})
        if rollback:
            entry["previous"] = entry["previous"][:-1]
        elif current:
            entry["previous"] = [v for v in entry["previous"] if v != current] + [current]
        entry["version"] = target
    for name in retired:
        del state["serving"][name]
    if (chosen or retired or serving_state is not None) and not check_mode:
        save_state(state_path, state)
    serving = {n: e["version"] for n, e in state["serving"].items()}
    result = {"changed": bool(chosen or retired), "switches": switches, "retired": retired, "serving": serving,
              "evaluations": [dict(r, flavour=n, version=v) for (n, v), r in sorted(results.items()) if r],
              "previous": {n: e.get("previous", []) for n, e in state["serving"].items()},
              # The whole state after this run (what the state file holds): the server's input.
              "state": state}
    if kept is not None:
        result.update(measured=kept, unevaluated=unevaluated)
    return result


def plan(flavours, dest, rollback=(), max_tokens=48, serving_state=None, measured=None):
    """What decide() will look at and has no result for in `measured` (kept elsewhere): the
    versions to evaluate first, each with the identity to keep its result under. Pure: it
    decides, switches and writes nothing; the same errors as decide() for a bad rollback or a
    version not prepared."""
    state, declared, kept = _inputs(flavours, dest, serving_state, measured or {})
    missing = []
    for name, current, target in _looked_at(declared, state, rollback):
        flavour = declared[name]
        for version in dict.fromkeys(v for v in (current, target) if v and v in state["ready"].get(name, {})):
            if not flavour.get("eval_set"):
                continue
            identity = _identity(flavour, version, state, dest, max_tokens)
            entry = kept.get(name, {}).get(version)
            if not (entry and entry.get("identity") == identity):
                missing.append({"flavour": name, "version": version, "eval_set": flavour["eval_set"],
                                "candidate": candidate_name(name, version), "identity": identity})
    return missing


def _inputs(flavours, dest, serving_state, measured):
    """The state (the file's, with the serving part kept elsewhere when given), the declared
    flavours by name, and the kept evaluations of declared, prepared versions (or None)."""
    state = load_state(os.path.join(dest, STATE_FILE))
    if serving_state is not None:
        state["serving"] = copy.deepcopy(serving_state)
    declared = {f["name"]: f for f in flavours}
    kept = None
    if measured is not None:
        # Only declared, prepared versions: what was retired leaves the store.
        kept = {n: {v: e for v, e in versions.items() if v in state["ready"].get(n, {})}
                for n, versions in copy.deepcopy(measured).items() if n in declared}
    return state, declared, kept


def _looked_at(declared, state, rollback):
    """(flavour, version in service, version to serve) of each flavour this run decides on."""
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
    looked_at = []
    for name, target in sorted(targets.items()):
        if target not in state["ready"].get(name, {}):
            raise FlavourError("%s %s: not prepared (run phase 3 first)" % (name, target))
        looked_at.append((name, state["serving"].get(name, {}).get("version"), target))
    return looked_at


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
