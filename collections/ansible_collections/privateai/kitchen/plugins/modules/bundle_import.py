#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: bundle_import
short_description: Verify an air-gap bundle and import it into the site's registry and S3
description:
  - Checks every file's sha256 (in parallel), the certificates' validity, the registry
    (reachable, credentials, which images it holds) and S3 (which objects exist; a published
    adapter version with other content is refused). Any problem fails the task with every
    problem listed, and nothing is written.
  - Then pushes missing images with skopeo (digests preserved), uploads missing objects
    (multipart, resuming an interrupted upload), writes each model's SHA256SUMS once all its
    files are in the bucket, places model files in I(model_dir), and writes a receipt into the
    bundle's C(audit/) folder and into the models bucket (C(receipts/)).
  - Takes a whole bundle or single volumes, in any order. A second import moves nothing,
    writes no receipt and reports C(changed=false).
version_added: 0.2.0
author: Private AI Kitchen contributors
options:
  paths:
    description: "Bundle folders or volume folders."
    type: list
    elements: path
    required: true
  registry:
    description: "Internal registry: I(host), I(ca_file), I(username), I(password)."
    type: dict
    required: true
  storage:
    description: "S3: I(endpoint), I(access_key), I(secret_key), I(region), I(ca_file). Required unless I(images_only)."
    type: dict
  buckets:
    description: "\"Bucket names: I(models), I(adapters), I(eval). Required unless I(images_only).\""
    type: dict
  images_only:
    description:
      - Verify and push the images only, and write I(mirror_config); no S3, no model files, no receipt.
      - The first step on a single host, whose S3 server runs from one of the bundle's images.
    type: bool
    default: false
  model_dir:
    description: "Single host: folder the model server reads models from (<model_dir>/<model>/)."
    type: path
  ca_dir:
    description: "Folder that receives the bundle's CA certificates."
    type: path
  mirror_config:
    description: "YAML file written with kitchen_images and mirror entries for the imported images."
    type: path
  signature:
    description: "What the playbook found of the manifest signature, recorded in the receipt."
    type: str
extends_documentation_fragment:
  - privateai.kitchen.bundle
attributes:
  check_mode: {support: full}"""

EXAMPLES = r"""
- name: Import the bundle
  privateai.kitchen.bundle_import:
    paths: [/media/usb0, /media/usb1]
    registry:
      host: registry.acme.internal:5000
      ca_file: /etc/pki/acme-root-ca.pem
      username: importer
      password: "{{ vault_registry_password }}"
    storage:
      endpoint: https://s3.apps.acme.internal
      access_key: "{{ vault_s3_key }}"
      secret_key: "{{ vault_s3_secret }}"
      ca_file: /etc/pki/acme-root-ca.pem
    buckets: {models: kitchen-models, adapters: kitchen-lora, eval: kitchen-eval}
"""

RETURN = r"""
verified: {description: Bundle id, volumes, files and bytes verified, and the seconds it took., type: dict, returned: always}
images: {description: Each image's target and action (present, push)., type: list, elements: dict, returned: always}
objects: {description: Each S3 object with its action (present, uploaded, resumed, replaced)., type: list, elements: dict, returned: always}
bytes_sent: {description: Bytes uploaded to S3 by this run., type: int, returned: always}
receipt: {description: Paths of the receipt in the bundle and in S3; null when nothing moved., type: dict, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.privateai.kitchen.plugins.module_utils.files import COMMON_ARGS, KitchenError, ProgressFile
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_import import import_bundle, import_images


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            registry=dict(type="dict", required=True, options=dict(
                host=dict(type="str", required=True), ca_file=dict(type="path"), username=dict(type="str"),
                password=dict(type="str", no_log=True))),
            storage=dict(type="dict", options=dict(
                endpoint=dict(type="str", required=True), access_key=dict(type="str", required=True, no_log=True),
                secret_key=dict(type="str", required=True, no_log=True), region=dict(type="str", default="us-east-1"),
                ca_file=dict(type="path"))),
            buckets=dict(type="dict", options=dict(
                models=dict(type="str", required=True), adapters=dict(type="str", required=True),
                eval=dict(type="str", required=True))),
            model_dir=dict(type="path"), ca_dir=dict(type="path"), mirror_config=dict(type="path"),
            signature=dict(type="str"), **COMMON_ARGS,
            images_only=dict(type="bool", default=False)),
        required_if=[("images_only", False, ("storage", "buckets"))],
        supports_check_mode=True)
    params = module.params
    try:
        progress = ProgressFile(params["progress_file"])
        if params["images_only"]:
            result = import_images(params["paths"], params, workers=params["workers"], progress=progress,
                                   check_mode=module.check_mode)
        else:
            result = import_bundle(params["paths"], params, workers=params["workers"], check_mode=module.check_mode,
                                   signature=params["signature"], progress=progress)
    except KitchenError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
