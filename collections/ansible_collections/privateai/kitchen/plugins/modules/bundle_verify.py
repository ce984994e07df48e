#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: bundle_verify
short_description: Check every file of an air-gap bundle, or of some of its volumes
description:
  - Checks the manifest's own checksum and schema, then every file's size and sha256 (files
    hashed in parallel across cores) and the CA certificates' validity, and reports every
    missing, truncated or changed file at once. Writes nothing.
version_added: 0.2.0
author: Private AI Kitchen contributors
options:
  paths:
    description: "Bundle folders or volume folders."
    type: list
    elements: path
    required: true
extends_documentation_fragment:
  - privateai.kitchen.bundle
attributes:
  check_mode: {support: full}"""

EXAMPLES = r"""
- name: Verify the volume on this disk
  privateai.kitchen.bundle_verify:
    paths: [/media/usb0]
"""

RETURN = r"""
verified: {description: Bundle id, manifest sha256, volumes here and missing, files, bytes and seconds., type: dict, returned: success}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.privateai.kitchen.plugins.module_utils.files import COMMON_ARGS, KitchenError, ProgressFile
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_import import verify


def main():
    module = AnsibleModule(argument_spec=dict(paths=dict(type="list", elements="path", required=True),
                                              **COMMON_ARGS),
                           supports_check_mode=True)
    try:
        summary, _, _ = verify(module.params["paths"], module.params["workers"],
                               ProgressFile(module.params["progress_file"]))
    except KitchenError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, verified=summary)


if __name__ == "__main__":
    main()
