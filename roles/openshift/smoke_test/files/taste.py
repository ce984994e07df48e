#!/usr/bin/env python3
"""The taste test: ask a served model from inside the cluster (networking ruled out).

Runs in the smoke-test Job of the smoke_test role with the standard library only.
Environment: KITCHEN_URL (e.g. https://granite-predictor.kitchen-platform.svc.cluster.local:8443),
KITCHEN_MODEL (served model name), KITCHEN_PROMPT, KITCHEN_MAX_TOKENS, KITCHEN_TIMEOUT (s),
KITCHEN_TOKEN_FILE (optional bearer token file), KITCHEN_CA_FILE (CA that signed the server's
certificate; the system's trust otherwise). A token is only ever sent over https. Prints one
JSON line with the answer and its latency; exit status 1 when the model is not listed or the
answer is empty.
"""

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request


def call(url, body=None, token=None, timeout=60, context=None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", "Bearer " + token)
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        payload = json.loads(response.read().decode())
    return payload, time.monotonic() - started


def main():
    base = os.environ["KITCHEN_URL"].rstrip("/")
    model = os.environ["KITCHEN_MODEL"]
    prompt = os.environ.get("KITCHEN_PROMPT", "Name three ingredients of a good soup.")
    max_tokens = int(os.environ.get("KITCHEN_MAX_TOKENS", "64"))
    timeout = float(os.environ.get("KITCHEN_TIMEOUT", "120"))
    token_file = os.environ.get("KITCHEN_TOKEN_FILE")
    token = open(token_file).read().strip() if token_file and os.path.exists(token_file) else None
    result = {"model": model, "url": base, "ok": False}
    if token and not base.startswith("https://"):
        result["error"] = "refusing to send the bearer token over plain HTTP: KITCHEN_URL must be https://"
        print(json.dumps(result))
        return 1
    context = ssl.create_default_context(cafile=os.environ.get("KITCHEN_CA_FILE") or None)
    try:
        models, models_seconds = call(base + "/v1/models", token=token, timeout=timeout, context=context)
        served = [entry.get("id") for entry in models.get("data", [])]
        result.update(models=served, models_seconds=round(models_seconds, 3))
        if model not in served:
            result["error"] = "model %r is not in /v1/models (%s)" % (model, ", ".join(map(str, served)) or "none")
            print(json.dumps(result))
            return 1
        answer, seconds = call(base + "/v1/chat/completions", token=token, timeout=timeout, context=context, body={
            "model": model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0})
        text = ((answer.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        usage = answer.get("usage") or {}
        result.update(prompt=prompt, answer=text, latency_seconds=round(seconds, 3),
                      completion_tokens=usage.get("completion_tokens"),
                      tokens_per_second=round(usage["completion_tokens"] / seconds, 2)
                      if usage.get("completion_tokens") and seconds else None)
        result["ok"] = bool(text.strip())
        if not result["ok"]:
            result["error"] = "the answer is empty"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        result["error"] = "%s: %s" % (type(exc).__name__, exc)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
