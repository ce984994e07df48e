#!/usr/bin/env python3
"""Bring the adapters a running vLLM serves in line with the flavours in service, without a
restart: vLLM's runtime adapter endpoints (VLLM_ALLOW_RUNTIME_LORA_UPDATING).

Runs in the flavour Job of the kserve_lora role (standard library and flavour_checks.py,
shipped beside it), after its init container placed and verified the adapter files on the
volume the predictor mounts.
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
from flavour_checks import error_text, server_from_environment  # noqa: E402 - shipped beside this script


def adapters(call, model):
    """{adapter name: path} of the LoRA cards whose parent is the base model."""
    return {card["id"]: card.get("root") for card in call("/v1/models")["data"] if card.get("parent") == model}


def main():
    try:
        model, call = server_from_environment()
        with open(os.environ["KITCHEN_FLAVOURS"]) as handle:
            wanted = json.load(handle)
    except (KeyError, OSError, ValueError) as exc:
        print(json.dumps({"ok": False, "error": "setup: %s" % exc}))
        return 2
    result = {"ok": False, "model": model, "loaded": [], "switched": [], "unloaded": [], "kept": []}
    try:
        served = adapters(call, model)
        for name in sorted(set(served) - set(wanted)):
            call("/v1/unload_lora_adapter", {"lora_name": name})
            result["unloaded"].append(name)
        for name, path in sorted(wanted.items()):
            if served.get(name) == path:
                result["kept"].append(name)
                continue
            if name in served:
                call("/v1/unload_lora_adapter", {"lora_name": name})
                result["switched"].append({"flavour": name, "from": served[name], "to": path})
            else:
                result["loaded"].append(name)
            call("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        result["serving"] = adapters(call, model)
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:  # HTTPError is a URLError
        result["error"] = error_text(exc)
    result["ok"] = result.get("serving") == wanted
    if "serving" in result and not result["ok"]:
        result["error"] = "the server lists %s, the flavours in service are %s" % (result["serving"], wanted)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
