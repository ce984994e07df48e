#!/usr/bin/env python3
"""Evaluate adapter versions in the running vLLM before (or right after) they serve: each is
loaded at runtime as "<flavour>@<version>" beside the flavours in service, asked its
evaluation set at temperature 0, and unloaded again, so what is served does not change.

Runs in the evaluation Job of the kserve_lora role (standard library and flavour_checks.py,
shipped beside it), after its init container placed and verified the versions' files on the
volume the predictor mounts. Environment:
  KITCHEN_URL         predictor Service, e.g. http://granite-predictor.kitchen-platform.svc.cluster.local
  KITCHEN_MODEL       served name of the base model
  KITCHEN_CANDIDATES  JSON file {"<flavour>@<version>": {"path": <adapter path as the predictor
                      sees it>, "eval_set": <file name in KITCHEN_EVAL_DIR>}}
  KITCHEN_EVAL_DIR    folder of the evaluation sets (JSONL)
  KITCHEN_MAX_TOKENS  output tokens per case unless the case sets its own (default 48)
  KITCHEN_TIMEOUT     seconds per request (default 120)
  KITCHEN_TOKEN_FILE  optional bearer token file
Prints one JSON line: per candidate its pass rate, latency and first failures, and per
candidate that could not be evaluated the error (the controller refuses to switch to it).
Exit status: 0 a report was printed, 2 bad setup.
"""

import json
import os
import sys
import time
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flavour_checks import (  # noqa: E402 - shipped beside this script
    FlavourError, chat_body, error_text, read_eval_set, score, server_from_environment)


def main():
    try:
        model, call = server_from_environment()
        with open(os.environ["KITCHEN_CANDIDATES"]) as handle:
            candidates = json.load(handle)
        eval_dir = os.environ["KITCHEN_EVAL_DIR"]
        cases = {name: read_eval_set(os.path.join(eval_dir, entry["eval_set"])) for name, entry in candidates.items()}
    except (KeyError, OSError, ValueError, FlavourError) as exc:
        print(json.dumps({"ok": False, "error": "setup: %s" % exc}))
        return 2
    max_tokens = int(os.environ.get("KITCHEN_MAX_TOKENS", "48"))

    def ask_as(name):
        def ask(prompt, tokens):
            started = time.monotonic()
            answer = call("/v1/chat/completions", chat_body(name, prompt, tokens))
            return answer["choices"][0]["message"]["content"] or "", time.monotonic() - started
        return ask

    result = {"ok": False, "model": model, "results": {}, "errors": {}}
    for name, entry in sorted(candidates.items()):
        loaded = False
        try:
            cards = {card["id"]: card.get("root") for card in call("/v1/models")["data"]}
            if name in cards and cards[name] != entry["path"]:
                call("/v1/unload_lora_adapter", {"lora_name": name})  # a stale candidate of that name
            if cards.get(name) != entry["path"]:
                call("/v1/load_lora_adapter", {"lora_name": name, "lora_path": entry["path"]})
            loaded = True
            result["results"][name] = score(cases[name], ask_as(name), max_tokens)
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            result["errors"][name] = error_text(exc)  # HTTPError is a URLError
        finally:
            if loaded:
                try:  # the candidate leaves; the flavours in service were never touched
                    call("/v1/unload_lora_adapter", {"lora_name": name})
                except (urllib.error.URLError, OSError) as exc:
                    result["errors"].setdefault(name, "unloading afterwards: %s" % exc)
    result["ok"] = not result["errors"] and len(result["results"]) == len(candidates)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
