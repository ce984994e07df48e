#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: llm_baseline
short_description: Measure a model server's baseline (time to first token, tokens/s) once per deployment
description:
  - Streams chat completions at temperature 0 from an OpenAI-compatible server at each
    concurrency level (after one warm-up request) and stores time to first token, one
    request's decode rate and the output tokens per second of all requests together as JSON,
    with a short human-readable summary beside it.
  - The baseline belongs to what was measured (I(identity), for example the model's sha256,
    the server image digest and its arguments) and to the settings. While the stored file
    matches both, nothing is measured again and the module reports no change; a new model,
    image or setting, or I(refresh), measures again.
  - Any failed request fails the module and leaves the stored baseline as it was.
version_added: 0.3.0
author: Private AI Kitchen contributors
options:
  url: {description: "Base URL of the server, e.g. http://10.89.0.2:8080.", type: str, required: true}
  model: {description: Served model name (the request's model field)., type: str, required: true}
  dest: {description: JSON file of the baseline; the summary is written beside it with the suffix .txt., type: path, required: true}
  identity: {description: What the figures belong to; a stored baseline with another identity is measured again., type: dict, default: {}}
  prompt: {description: The prompt of every request., type: str, default: Write a short recipe for a tomato soup.}
  max_tokens: {description: Output tokens asked for per request., type: int, default: 64}
  concurrency: {description: Concurrency levels, measured in this order., type: list, elements: int, default: [1, 4]}
  rounds: {description: Requests per concurrent client at each level., type: int, default: 3}
  timeout: {description: Seconds one request may take., type: float, default: 180}
  refresh: {description: Measure again even when the stored baseline matches., type: bool, default: false}
attributes:
  check_mode: {support: full}
"""

EXAMPLES = r"""
- name: Measure the baseline of the served model
  privateai.kitchen.llm_baseline:
    url: http://10.89.0.2:8080
    model: gemma-3-270m
    dest: /var/lib/private-ai-kitchen/baseline/gemma-3-270m.json
    identity: {image: "localhost:5443/kitchen/llama-server@sha256:...", model_sha256: "..."}
"""

RETURN = r"""
baseline: {description: The stored or new baseline (levels with ttft_seconds, tokens_per_second_per_request, output_tokens_per_second)., type: dict, returned: success}
summary: {description: The human-readable summary., type: str, returned: success}
summary_path: {description: Where the summary is stored., type: str, returned: success}
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.privateai.kitchen.plugins.module_utils.files import atomic_write
from ansible_collections.privateai.kitchen.plugins.module_utils.llm_baseline import (
    FORMAT_VERSION, BaselineError, baseline_document, measure, summary_text)


def stored_baseline(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def main():
    module = AnsibleModule(argument_spec=dict(
        url=dict(type="str", required=True), model=dict(type="str", required=True),
        dest=dict(type="path", required=True), identity=dict(type="dict", default={}),
        prompt=dict(type="str", default="Write a short recipe for a tomato soup."),
        max_tokens=dict(type="int", default=64), concurrency=dict(type="list", elements="int", default=[1, 4]),
        rounds=dict(type="int", default=3), timeout=dict(type="float", default=180),
        refresh=dict(type="bool", default=False)), supports_check_mode=True)
    p = module.params
    for name in ("max_tokens", "rounds"):
        if p[name] < 1:
            module.fail_json(msg="%s: %r must be at least 1" % (name, p[name]))
    if not p["concurrency"] or min(p["concurrency"]) < 1:
        module.fail_json(msg="concurrency: %r must list levels of at least 1" % (p["concurrency"],))
    settings = {"prompt": p["prompt"], "max_tokens": p["max_tokens"], "concurrency": p["concurrency"],
                "rounds": p["rounds"]}
    summary_path = os.path.splitext(p["dest"])[0] + ".txt"

    stored = stored_baseline(p["dest"])
    if (stored and not p["refresh"] and stored.get("format") == FORMAT_VERSION and stored.get("model") == p["model"]
            and stored.get("identity") == p["identity"] and stored.get("settings") == settings):
        summary = summary_text(stored)
        # The summary is derived from the JSON: written again only when missing or edited.
        changed = False if module.check_mode else atomic_write(summary_path, summary.encode())
        module.exit_json(changed=changed, baseline=stored, summary=summary, summary_path=summary_path)
    if module.check_mode:
        module.exit_json(changed=True, baseline=stored or {}, summary="Check mode: the baseline would be measured.",
                         summary_path=summary_path)
    try:
        levels = measure(p["url"], p["model"], p["prompt"], p["max_tokens"], p["concurrency"], p["rounds"], p["timeout"])
    except BaselineError as exc:
        module.fail_json(msg="Baseline of %s not measured (the stored one is kept): %s" % (p["model"], exc))
    document = baseline_document(p["model"], p["url"], p["identity"], settings, levels)
    summary = summary_text(document)
    os.makedirs(os.path.dirname(p["dest"]) or ".", exist_ok=True)
    atomic_write(p["dest"], (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    atomic_write(summary_path, summary.encode())
    module.exit_json(changed=True, baseline=document, summary=summary, summary_path=summary_path)


if __name__ == "__main__":
    main()
