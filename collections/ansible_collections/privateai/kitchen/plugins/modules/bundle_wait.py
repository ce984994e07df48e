# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
# Documentation only: the work is done on the controller by the action plugin of the same name.

DOCUMENTATION = r"""
module: bundle_wait
short_description: Wait for an asynchronous bundle build, verify or import, showing its progress
description:
  - Ansible shows nothing while a module runs. The bundle modules, started with C(async) and
    C(poll=0), keep their progress in I(progress_file); this action polls the job and prints
    the stage, the bytes done, the rate and the time left whenever they change.
  - Returns the module's own result (and fails as it failed), so the task that registers it
    reads exactly as the module task would. A I(job) that did not run asynchronously (for
    example in check mode) is returned as it is.
version_added: 0.2.0
author: Private AI Kitchen contributors
options:
  job:
    description: The registered result of the task started with C(async) and C(poll=0).
    type: dict
    required: true
  progress_file:
    description: The file given to the module as its I(progress_file).
    type: path
  timeout:
    description: Seconds to wait before giving up (the job is left running).
    type: int
    default: 86400
  interval:
    description: Longest pause between two looks at the job (the first looks come sooner - 0.25 s, doubling).
    type: float
    default: 2
attributes:
  check_mode:
    support: full
  action:
    support: full
"""

EXAMPLES = r"""
- name: Start the import
  privateai.kitchen.bundle_import:
    paths: [/media/usb0]
    progress_file: "{{ progress.path }}"
    registry: {host: registry.kitchen.internal:5000}
    storage: {endpoint: "https://s3.kitchen.internal:9000", access_key: "{{ s3_key }}", secret_key: "{{ s3_secret }}"}
    buckets: {models: models, adapters: adapters, eval: eval}
  async: 86400
  poll: 0
  register: job

- name: Wait for the import
  privateai.kitchen.bundle_wait:
    job: "{{ job }}"
    progress_file: "{{ progress.path }}"
  register: imported
"""

RETURN = r"""
waited:
  description: Seconds spent waiting.
  type: float
  returned: when the job ran asynchronously
"""
