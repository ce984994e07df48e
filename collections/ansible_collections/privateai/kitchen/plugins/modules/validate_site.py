# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
# Documentation only: the work is done on the controller by the action plugin of the same name.

DOCUMENTATION = r"""
module: validate_site
short_description: Validate a Private AI Kitchen site description against its JSON Schema
description:
  - Collects every C(kitchen_*) variable of the host, templates it, and validates the whole
    site against the site schema plus the rules a schema cannot express (unique names,
    adapters bound to an existing base model, tenants that exist, plain-text secrets).
  - Reports every violation at once, each with its variable path, the offending value and
    what was expected. Secret values are never echoed.
  - Runs on the controller and changes nothing; supports check mode.
version_added: 0.1.0
author: Private AI Kitchen contributors
options:
  schema:
    description: Path of the site schema (YAML or JSON).
    type: path
    required: true
  derived:
    description: Names of C(kitchen_*) variables the toolkit derives from the site (role kitchen_defaults); they are not site keys and are not validated.
    type: list
    elements: str
    default: []
  fail_on_violations:
    description: Fail the task when there are violations. Set to false to collect them.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  action:
    support: full
"""

EXAMPLES = r"""
- name: Validate the site description
  privateai.kitchen.validate_site:
    schema: "{{ playbook_dir }}/../schemas/site.schema.yaml"
"""

RETURN = r"""
violations:
  description: "Every violation as C(<path>: <message>), sorted by path."
  type: list
  elements: str
  returned: always
platform:
  description: The site's kitchen_platform.
  type: str
  returned: always
delivery:
  description: The site's kitchen_delivery (apply when unset).
  type: str
  returned: always
counts:
  description: Number of models, adapters and tenants.
  type: dict
  returned: always
"""
