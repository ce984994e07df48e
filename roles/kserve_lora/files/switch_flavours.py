#!/usr/bin/env python3
"""Bring the adapters a running vLLM serves in line with the flavours in service, without a
restart: vLLM's runtime adapter endpoints (VLLM_ALLOW_RUNTIME_LORA_UPDATING).

Runs in the flavour Job of the kserve_lora role (standard library and flavour_checks.py,
shipped beside it), after its init
container placed and verified the adapter files on the volume the predictor mounts.
Environment:
  KITCHEN_URL         predictor Service, e.g. http://granite-predictor.kitchen-platform.svc.cluster.local
  KITCHEN_MODEL       served name of the base model (the parent of every adapter card)
  KITCHEN_FLAVOURS    JSON file {"<flavour>": "<adapter path as the predictor sees it>"}
  KITCHEN_TIMEOUT     seconds per request (default 120)
  KITCHEN_TOKEN_FILE  optional bearer token file
A flavour loaded from another path is unloaded and loaded again from the new one (a version
switch), a missing one is loaded, an adapter of the base that is no longer listed is unloaded.
Prints one JSON line: loaded, switched, unloaded, kept, and what /v1/models lists afterwards.
Exit status: 0 the server lists exactly the flavours in service, 1 otherwise, 2 bad setup.
"""

import json
import os
import sys
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flavour_checks import http_json as call  # noqa: E402 - shipped beside this script


def adapters(base, model, token, timeout):
    """{adapter name: path} of the LoRA cards whose parent is the base model."""
    cards = call(base, "/v1/models", token=token, timeout=timeout)["data"]
    return {card["id"]: card.get("root") for card in cards if card.get("parent") == model}


def main():
    try:
        base = os.environ["KITCHEN_URL"].rstrip("/")
        model = os.environ["KITCHEN_MODEL"]
        with open(os.environ["KITCHEN_FLAVOURS"]) as handle:
            wanted = json.load(handle)
    except (KeyError, OSError, ValueError) as exc:
        print(json.dumps({"ok": False, "error": "setup: %s" % exc}))
        return 2
    timeout = float(os.environ.get("KITCHEN_TIMEOUT", "120"))
    token_file = os.environ.get("KITCHEN_TOKEN_FILE")
    token = open(token_file).read().strip() if token_file and os.path.exists(token_file) else None
    result = {"ok": False, "model": model, "loaded": [], "switched": [], "unloaded": [], "kept": []}
    try:
        served = adapters(base, model, token, timeout)
        for name in sorted(set(served) - set(wanted)):
            call(base, "/v1/unload_lora_adapter", {"lora_name": name}, token, timeout)
            result["unloaded"].append(name)
        for name, path in sorted(wanted.items()):
            if served.get(name) == path:
                result["kept"].append(name)
                continue
            if name in served:
                call(base, "/v1/unload_lora_adapter", {"lora_name": name}, token, timeout)
                result["switched"].append({"flavour": name, "from": served[name], "to": path})
            else:
                result["loaded"].append(name)
            call(base, "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path}, token, timeout)
        result["serving"] = adapters(base, model, token, timeout)
    except urllib.error.HTTPError as exc:
        result["error"] = "%s %s: %s" % (exc.code, exc.reason, exc.read().decode(errors="replace")[:500])
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        result["error"] = str(exc)
    result["ok"] = result.get("serving") == wanted
    if "serving" in result and not result["ok"]:
        result["error"] = "the server lists %s, the flavours in service are %s" % (result["serving"], wanted)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
