#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: lora_prepare
short_description: Fetch, gate and prepare every declared LoRA flavour version in one call
description:
  - For every version of every flavour in I(flavours), fetches the adapter files from S3
    (C(lora/<flavour>/<version>/) in the adapters bucket, where phase 1 published them) or,
    without I(storage), from the bundle, checking each file's sha256 against the bundle manifest.
  - Gates each version against the base model it declares, reading only headers - the
    base model's GGUF or safetensors tensor table and the adapter's config and safetensors
    header. Refused are another C(base_model_name_or_path) than the model's name or
    C(upstream_name), C(r) above I(max_rank), DoRA, C(modules_to_save), target modules the base
    model lacks, tensors whose shapes do not fit, files that differ from the bundle.
  - With I(server_format=gguf) (llama.cpp) converts each version to a LoRA GGUF.
  - Any refusal fails the module naming flavour, version and reason, and nothing is changed,
    so the flavours in service keep serving. Otherwise the C(ready) part of the state file
    C(<dest>/state.json) lists every prepared version.
version_added: 0.4.0
author: Private AI Kitchen contributors
options:
  flavours: {description: kitchen_adapters entries (name, base_model, versions, serving_version, eval_set)., type: list, elements: dict, required: true}
  models: {description: kitchen_models entries (name, upstream_name)., type: list, elements: dict, required: true}
  bundle_dir: {description: The imported bundle (its manifest holds every file's sha256)., type: path, required: true}
  model_dir: {description: "Where phase 1 placed the base model files (<model_dir>/<model>/); without it the bundle's copy is read.", type: path}
  dest: {description: Folder of the prepared adapters and the state file., type: path, required: true}
  max_rank: {description: The site's max_lora_rank., type: int, required: true}
  server_format: {description: gguf for llama.cpp; peft keeps the PEFT folder (vLLM)., type: str, choices: [gguf, peft], default: gguf}
  storage: {description: S3 endpoint, access_key, secret_key, region, ca_file; without it files come from the bundle., type: dict}
  buckets: {description: The site's buckets (adapters, eval)., type: dict}
attributes:
  check_mode: {support: full}
"""

EXAMPLES = r"""
- name: Fetch, gate and prepare the flavours
  privateai.kitchen.lora_prepare:
    flavours: "{{ kitchen_adapters }}"
    models: "{{ kitchen_models }}"
    bundle_dir: /var/lib/private-ai-kitchen/bundle
    model_dir: /var/lib/private-ai-kitchen/models
    dest: /var/lib/private-ai-kitchen/lora
    max_rank: 16
    storage: {endpoint: "https://localhost:8333", access_key: "...", secret_key: "...", ca_file: /etc/kitchen/ca.pem}
    buckets: {adapters: kitchen-lora, eval: kitchen-eval}
"""

RETURN = r"""
ready: {description: "Prepared versions: {flavour: {version: {path, sha256, digest}}}; with server_format peft also files: {relative path: sha256}.", type: dict, returned: success}
fetched: {description: Files downloaded or copied in this run., type: list, returned: success}
prepared: {description: Versions converted in this run., type: list, returned: success}
gated: {description: How many versions passed the gate., type: int, returned: success}
timings: {description: Seconds spent fetching (and hashing) and converting - the time that grows with the bytes., type: dict, returned: success}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.privateai.kitchen.plugins.module_utils.files import KitchenError
from ansible_collections.privateai.kitchen.plugins.module_utils.flavour_prepare import FlavourError, prepare


def main():
    module = AnsibleModule(argument_spec=dict(
        flavours=dict(type="list", elements="dict", required=True),
        models=dict(type="list", elements="dict", required=True),
        bundle_dir=dict(type="path", required=True), model_dir=dict(type="path"),
        dest=dict(type="path", required=True), max_rank=dict(type="int", required=True),
        server_format=dict(type="str", choices=["gguf", "peft"], default="gguf"),
        storage=dict(type="dict", options=dict(
            endpoint=dict(type="str", required=True), access_key=dict(type="str", required=True, no_log=True),
            secret_key=dict(type="str", required=True, no_log=True), region=dict(type="str", default="us-east-1"),
            ca_file=dict(type="path"))),
        buckets=dict(type="dict")), supports_check_mode=True)
    p = module.params
    client = None
    if p["storage"]:
        if not p["buckets"] or not {"adapters", "eval"} <= set(p["buckets"]):
            module.fail_json(msg="buckets: name the adapters and eval buckets (got %r)" % (p["buckets"],))
        from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_s3 import make_client
        s = p["storage"]
        client = make_client(s["endpoint"], s["access_key"], s["secret_key"], s["region"], s["ca_file"])
    try:
        result = prepare(p["flavours"], p["models"], p["bundle_dir"], p["model_dir"], p["dest"], p["max_rank"],
                         p["server_format"], client=client, buckets=p["buckets"], check_mode=module.check_mode)
    except (FlavourError, KitchenError) as exc:
        module.fail_json(msg="Phase 3: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
