# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin: validate the merged site description on the controller."""

from __future__ import annotations

import json

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.privateai.kitchen.plugins.module_utils.site_contract import (
    SITE_PREFIX,
    SiteValidator,
    Violation,
    load_schema,
    replace_secrets,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("schema", "fail_on_violations", "derived", "secrets", "connected"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        schema_path = args.get("schema")
        if not schema_path:
            raise AnsibleError("validate_site: 'schema' (path of the site JSON Schema) is required")
        try:
            validator = SiteValidator(load_schema(to_text(schema_path)))
        except (OSError, ValueError) as exc:
            raise AnsibleError("validate_site: cannot load schema %s: %s" % (schema_path, exc)) from exc

        violations: list[Violation] = []
        raw_site, site = {}, {}
        # The toolkit's own values derived from the site (role kitchen_defaults): not site keys.
        derived = set(args.get("derived") or [])
        # secrets: false leaves every secret untemplated (a stand-in takes its place): a lookup
        # that generates a password writes its file when templated, which a rejected run must not.
        deferred = not boolean(args.get("secrets", True), strict=True)
        for name in sorted(k for k in task_vars if k.startswith(SITE_PREFIX) and k not in derived):
            raw_site[name] = task_vars[name]
            try:
                value = task_vars[name]
                if deferred:
                    value = replace_secrets(validator, {name: value})[name]
                templated = self._templar.template(value)
                # Plain JSON types from here on: what the schema sees is what roles will get.
                site[name] = json.loads(json.dumps(templated, default=to_text))
            except Exception as exc:  # pylint: disable=broad-except
                # Say which variable failed and why; the message names variables, not values.
                violations.append(Violation(name, "cannot be templated: %s" % to_text(exc).splitlines()[0]))

        violations.extend(validator.violations(
            site, raw_site, base_dir=task_vars.get("inventory_dir"),
            connected=boolean(args.get("connected", False), strict=True)))
        violations = sorted(set(violations))
        result.update(
            changed=False,
            violations=[str(v) for v in violations],
            # The site as roles read it: schema defaults filled in, no secret values.
            site=validator.public_view(site) if not violations else {},
            platform=site.get("kitchen_platform"),
            delivery=site.get("kitchen_delivery", "apply"),
            counts={
                "models": _count(site.get("kitchen_models")),
                "adapters": _count(site.get("kitchen_adapters")),
                "tenants": _count(site.get("kitchen_tenants")),
            },
        )
        if violations and args.get("fail_on_violations", True):
            result["failed"] = True
            result["msg"] = "The site description has %d problem(s):\n%s" % (
                len(violations), "\n".join("  - %s" % v for v in violations))
        return result


def _count(items):
    return len(items) if isinstance(items, list) else 0
