#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: bundle_build
short_description: Plan and build an air-gap bundle (images, models, adapters, CA, eval data)
description:
  - Reads every source first (image digests with skopeo, sha256 of every file, safetensors
    headers, shard indexes, adapter configs, certificate validity) and returns the plan (what
    will be added, what the bundle already holds, what the site already holds per I(receipt)).
  - Then copies only what is missing into volumes of at most I(volume_size), split at file
    boundaries, and writes the manifest (docs/bundle.md) into the bundle and every volume.
  - A second run with the same sources changes nothing. Check mode returns the plan only.
version_added: 0.2.0
author: Private AI Kitchen contributors
options:
  site:
    description: "Site name (kitchen_site_name)."
    type: str
    required: true
  dir:
    description: "Bundle folder."
    type: path
    required: true
  volume_size:
    description: "Largest volume in bytes, or a quantity like 4Gi."
    type: raw
    required: true
  receipt:
    description: "Receipt of the site's last import; what it lists is not shipped again."
    type: path
  images:
    description: "Images to carry: name, source (a skopeo reference such as docker://... or oci:...), repository, tag, mirror_of."
    type: list
    elements: dict
    default: []
  models:
    description: "\"Base models: I(name), I(path) (folder, s3://, pypi://, hf://org/repo@commit, oci://registry/repo@sha256:...), I(format), I(allow_patterns) (files of an hf:// repository).\""
    type: list
    elements: dict
    default: []
  adapters:
    description: "\"LoRA adapters: I(name), I(version), I(base_model), I(path).\""
    type: list
    elements: dict
    default: []
  ca_certificates:
    description: "\"CA certificates: I(name), I(path) (PEM).\""
    type: list
    elements: dict
    default: []
  eval_sets:
    description: "\"Evaluation data: I(name), I(path) (file or folder).\""
    type: list
    elements: dict
    default: []
  source_ca_file:
    description: "CA file that verifies the source registries."
    type: path
  source_authfile:
    description: "containers auth file with credentials for the source registries."
    type: path
  source_s3:
    description:
      - S3 endpoint the models, adapters and eval sets given as C(s3://<bucket>/<prefix>) are read from.
      - Each prefix is mirrored into I(source_cache) and fetched again only where the bucket changed (ETag, size).
    type: dict
    suboptions:
      endpoint: {description: "URL, e.g. https://minio.lab.example:9000.", type: str, required: true}
      access_key: {description: Access key., type: str, required: true}
      secret_key: {description: Secret key., type: str, required: true}
      region: {description: Region., type: str, default: us-east-1}
      ca_file: {description: CA file that verifies the endpoint., type: path}
  source_hf:
    description:
      - Hugging Face sources (hf://org/repo@commit). The token is HF_TOKEN from the environment, never an option.
    type: dict
    suboptions:
      endpoint: {description: "Hub URL; HF_ENDPOINT, else https://huggingface.co, when unset.", type: str}
      ca_file: {description: CA file that verifies the endpoint (else the host's trust store or SSL_CERT_FILE)., type: path}
  source_cache:
    description: "Folder of the S3 source mirrors; ~/.cache/private-ai-kitchen/s3-sources when unset. Check mode fills it too: a source is read to be hashed."
    type: path
  all_platforms:
    description: "Copy every platform of a multi-arch image (keeps the list digest)."
    type: bool
    default: true
extends_documentation_fragment:
  - privateai.kitchen.bundle
attributes:
  check_mode: {support: full}"""

EXAMPLES = r"""
- name: Build the bundle
  privateai.kitchen.bundle_build:
    site: acme-dc1
    dir: /srv/bundles/acme-dc1
    volume_size: 25Gi
    images:
      - {name: vllm, source: "docker://quay.io/vllm/vllm-openai:v0.10.1", repository: vllm/vllm-openai, tag: v0.10.1}
    models:
      - {name: granite-3-8b-instruct, path: /srv/models/granite-3.3-8b-instruct}
"""

RETURN = r"""
plan:
  description: One entry per item, with action C(add), C(in-bundle) or C(at-site), its size and digest.
  type: list
  elements: dict
  returned: always
downloaded: {description: Objects and files fetched from S3, PyPI, Hugging Face and modelcar sources by this run., type: list, elements: str, returned: always}
bundle_id: {description: Id of the bundle written (not in check mode)., type: str, returned: success}
volumes: {description: Volumes with their file count and bytes., type: list, elements: dict, returned: success}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_build import build, plan
from ansible_collections.privateai.kitchen.plugins.module_utils.quantity import QuantityError, to_bytes
from ansible_collections.privateai.kitchen.plugins.module_utils.files import COMMON_ARGS, KitchenError, ProgressFile

def main():
    module = AnsibleModule(
        argument_spec=dict(
            site=dict(type="str", required=True), dir=dict(type="path", required=True),
            volume_size=dict(type="raw", required=True), receipt=dict(type="path"),
            images=dict(type="list", elements="dict", default=[]), models=dict(type="list", elements="dict", default=[]),
            adapters=dict(type="list", elements="dict", default=[]),
            ca_certificates=dict(type="list", elements="dict", default=[]),
            eval_sets=dict(type="list", elements="dict", default=[]),
            source_ca_file=dict(type="path"), source_authfile=dict(type="path"),
            source_s3=dict(type="dict", options=dict(
                endpoint=dict(type="str", required=True), access_key=dict(type="str", required=True, no_log=True),
                secret_key=dict(type="str", required=True, no_log=True), region=dict(type="str", default="us-east-1"),
                ca_file=dict(type="path"))),
            source_hf=dict(type="dict", options=dict(endpoint=dict(type="str"), ca_file=dict(type="path"))),
            source_cache=dict(type="path"),
            all_platforms=dict(type="bool", default=True), **COMMON_ARGS),
        supports_check_mode=True)
    spec = dict(module.params)
    try:
        spec["volume_size"] = to_bytes(spec["volume_size"], "kitchen_bundle.volume_size")
        progress = ProgressFile(spec.pop("progress_file"))
        the_plan = plan(spec, write_cache=not module.check_mode, progress=progress)
        actions = the_plan["actions"]
        if module.check_mode:
            module.exit_json(changed=any(a["action"] == "add" for a in actions), plan=actions,
                             downloaded=the_plan["downloaded"])
        changed, manifest = build(spec, the_plan, progress)
    except (KitchenError, QuantityError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed, plan=actions, downloaded=the_plan["downloaded"], bundle_id=manifest["bundle_id"],
                     volumes=manifest["volumes"])


if __name__ == "__main__":
    main()
