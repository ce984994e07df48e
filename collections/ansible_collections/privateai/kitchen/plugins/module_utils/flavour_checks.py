# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Evaluation sets and their scoring, and the JSON calls to a model server: the standard
library only, because the same file runs on the controller (flavour_decide) and, shipped in a
ConfigMap beside the flavour scripts, in the cluster's flavour and evaluation Jobs."""

import json
import os
import re
import ssl
import urllib.error
import urllib.request


class FlavourError(Exception):
    """Refused: the message names the flavour, version and reason."""


def candidate_name(flavour, version):
    """The served name of a version under evaluation, before it serves as <flavour>."""
    return "%s@%s" % (flavour, version)


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


def score(cases, ask, max_tokens):
    """Ask every case (ask(prompt, max_tokens) -> (text, seconds)): pass rate and latency."""
    outcomes, latencies = [], []
    for case in cases:
        text, seconds = ask(case["prompt"], case.get("max_tokens", max_tokens))
        latencies.append(seconds)
        outcomes.append({"prompt": case["prompt"], "passed": passes(case, text), "text": text[:200]})
    latencies.sort()
    passed = sum(o["passed"] for o in outcomes)
    return {"passed": passed, "total": len(outcomes), "pass_rate": round(passed / len(outcomes), 4),
            "latency_p50_seconds": round(latencies[len(latencies) // 2], 3),
            "latency_max_seconds": round(latencies[-1], 3),
            "failures": [o for o in outcomes if not o["passed"]][:5]}


def chat_body(model, prompt, max_tokens):
    """A chat completion at temperature 0 (and a fixed seed): the same answer every time."""
    return {"model": model, "temperature": 0, "max_tokens": max_tokens, "seed": 0,
            "messages": [{"role": "user", "content": prompt}]}


def http_json(base, path, body=None, token=None, timeout=120, context=None):
    """GET (or POST body as JSON) base+path: the JSON answer, or the text where it is none
    (vLLM's load and unload endpoints answer with a plain sentence). HTTP errors raise."""
    request = urllib.request.Request(base.rstrip("/") + path,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        text = response.read().decode()
    try:
        return json.loads(text)
    except ValueError:
        return text


def server_from_environment():
    """The model server a flavour Job talks to, from its environment: KITCHEN_URL, KITCHEN_MODEL
    (served name of the base model), KITCHEN_TIMEOUT (seconds per request, default 120) and
    KITCHEN_TOKEN_FILE (optional bearer token file) and KITCHEN_CA_FILE (CA of the server's
    certificate, the system's trust otherwise). Returns (model, call) with call(path,
    body=None) as http_json against that server. KeyError when URL or model is missing,
    ValueError when a token would travel over plain HTTP."""
    base, model = os.environ["KITCHEN_URL"].rstrip("/"), os.environ["KITCHEN_MODEL"]
    timeout = float(os.environ.get("KITCHEN_TIMEOUT", "120"))
    token_file = os.environ.get("KITCHEN_TOKEN_FILE")
    token = None
    if token_file and os.path.exists(token_file):
        with open(token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    if token and not base.startswith("https://"):
        raise ValueError("refusing to send the bearer token over plain HTTP: KITCHEN_URL must be https://")
    context = ssl.create_default_context(cafile=os.environ.get("KITCHEN_CA_FILE") or None)

    def call(path, body=None):
        return http_json(base, path, body, token, timeout, context)
    return model, call


def error_text(exc):
    """One line for a failed call: an HTTP error with the server's own words, else the error."""
    if isinstance(exc, urllib.error.HTTPError):
        return "%s %s: %s" % (exc.code, exc.reason, exc.read().decode(errors="replace")[:500])
    return str(exc)
