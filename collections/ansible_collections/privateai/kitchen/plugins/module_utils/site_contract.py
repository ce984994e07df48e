# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""The site contract: validate every `kitchen_*` variable of a site at once.

Pure Python on the controller (jsonschema, pyyaml). Used by the `validate_site` action
plugin of preflight and by the tests. Each violation names the variable path, the offending
value (never a secret) and what was expected, e.g.::

    kitchen_models[0].pvc_size: '40' is not a valid quantity like 40Gi
"""

from __future__ import annotations

import copy

from ansible_collections.privateai.kitchen.plugins.module_utils import (
    quantity,
    site_files,
    site_limits,
    site_rules,
    site_safety,
)
from ansible_collections.privateai.kitchen.plugins.module_utils.site_rules import Violation, did_you_mean
from ansible_collections.privateai.kitchen.plugins.module_utils.site_secrets import (  # noqa: F401 - public here
    DEFERRED_SECRET,
    is_plain_text_secret,
    replace_secrets,
)

SITE_PREFIX = "kitchen_"
SECRET_PLACEHOLDER = "<secret>"


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def load_schema(path: str) -> dict:
    import yaml

    with open(path, "r", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def format_path(parts) -> str:
    """['kitchen_models', 0, 'pvc_size'] -> 'kitchen_models[0].pvc_size'."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += "[%d]" % part
        else:
            text += ("." if text else "") + str(part)
    return text or "<site>"


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def show_value(value, secret: bool = False) -> str:
    """A short, safe rendering of an offending value for an error message."""
    if secret:
        return SECRET_PLACEHOLDER
    if isinstance(value, (dict, list, tuple)):
        # Containers may hold secrets: name their type, never their content.
        return _TYPE_NAMES[_json_type(value)]
    if isinstance(value, str):
        text = repr(str(value))
        return text if len(text) <= 80 else text[:77] + "...'"
    return repr(value)


def _size_above_zero(value) -> bool:
    """The storage-quantity format: a size with a unit, and more than nothing (a zero volume,
    quota or bundle volume is never what a site means)."""
    if not quantity.is_size(value):
        return False
    if quantity.to_bytes(value) == 0:
        raise quantity.QuantityError("is zero, expected a size above zero like 40Gi")
    return True


def _cpu_above_zero(value) -> bool:
    if not quantity.is_cpu(value):
        return False
    if quantity.to_cores(value) == 0:
        raise quantity.QuantityError("is zero, expected a CPU quantity above zero like 500m or 4")
    return True


def _duplicate_items(parts, items, secret) -> list[Violation]:
    """A violation per repeated item of a list of plain values, naming the first one."""
    import json

    seen, out = {}, []
    for index, item in enumerate(items):
        key = json.dumps(item, sort_keys=True, default=str)
        if key in seen:
            out.append(Violation(format_path(parts + [index]), "%s is a duplicate of %s" % (
                show_value(item, secret), format_path(parts + [seen[key]]))))
        else:
            seen[key] = index
    return out


class SiteValidator:
    """Validates a site description (a dict of kitchen_* variables) against the schema."""

    def __init__(self, schema: dict):
        import jsonschema

        self.schema = schema
        checker = jsonschema.FormatChecker()
        checker.checks("storage-quantity", raises=quantity.QuantityError)(_size_above_zero)
        checker.checks("cpu-quantity", raises=quantity.QuantityError)(_cpu_above_zero)
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        self._validator = validator_class(schema, format_checker=checker)

    # -- public -----------------------------------------------------------------------------
    def violations(self, site: dict, raw_site: dict | None = None, *, base_dir: str | None = None,
                   connected: bool = False) -> list[Violation]:
        """Every violation of the site, sorted by path. `raw_site` is the untemplated
        inventory data, used to catch plain-text secrets. With `base_dir` (the inventory
        folder, relative paths start there) the files the site names must exist: those the
        closed side reads, and with `connected` those the bundle build reads too."""
        found: set[Violation] = set()
        known = set(self.schema.get("properties", {}))
        for name in site:
            if name not in known:
                found.add(Violation(name, "unknown site variable" + did_you_mean(name, known)))
        schema_site = {k: v for k, v in site.items() if k in known}
        for error in self._validator.iter_errors(schema_site):
            found.update(self._explain(error))
        found.update(site_rules.violations(schema_site))
        found.update(site_limits.violations(schema_site))
        # Rules that show any value they refuse never see a secret.
        found.update(site_safety.violations(self.without_secrets(schema_site)))
        if base_dir is not None:
            found.update(site_files.missing_files(schema_site, base_dir=base_dir, connected=connected))
        if raw_site is not None:
            found.update(self._plain_text_secrets(schema_site, raw_site))
        return sorted(found)

    # -- schema errors -> messages ------------------------------------------------------------
    def _explain(self, error) -> list[Violation]:
        parts = list(error.absolute_path)
        path = format_path(parts)
        schema = error.schema if isinstance(error.schema, dict) else {}
        secret = bool(schema.get("writeOnly"))
        value = error.instance
        keyword = error.validator

        if keyword == "additionalProperties" and isinstance(value, dict):
            allowed = set(schema.get("properties", {}))
            return [
                Violation(format_path(parts + [key]), "unknown key" + did_you_mean(key, allowed))
                for key in value
                if key not in allowed
            ] if allowed else [Violation(path, error.message)]
        if keyword == "required":
            missing = [k for k in error.validator_value if isinstance(value, dict) and k not in value]
            why = self._condition(error)
            return [
                Violation(
                    format_path(parts + [key]),
                    ("required site variable is missing" if not parts else "required key is missing") + why,
                )
                for key in missing
            ]
        if keyword == "type":
            expected = error.validator_value
            expected = expected if isinstance(expected, list) else [expected]
            return [Violation(path, "%s is %s, expected %s" % (
                show_value(value, secret),
                _TYPE_NAMES.get(_json_type(value), _json_type(value)),
                " or ".join(_TYPE_NAMES.get(t, t) for t in expected),
            ))]
        if keyword == "format" and error.cause is not None:
            return [Violation(path, "%s %s" % (show_value(value, secret), error.cause))]
        if keyword in ("pattern", "format"):
            expected = schema.get("x-expected") or ("matching %s" % error.validator_value)
            return [Violation(path, "%s is not %s" % (show_value(value, secret), expected))]
        if keyword in ("enum", "const"):
            options = error.validator_value if keyword == "enum" else [error.validator_value]
            return [Violation(path, "%s is not one of: %s%s" % (
                show_value(value, secret),
                ", ".join(str(o) for o in options),
                did_you_mean(value, options) if isinstance(value, str) else "",
            ))]
        if keyword == "minItems":
            return [Violation(path, "needs at least %d item(s)" % error.validator_value)]
        if keyword == "minProperties":
            return [Violation(path, "needs at least %d key(s)" % error.validator_value)]
        if keyword == "uniqueItems" and isinstance(value, list):
            return _duplicate_items(parts, value, secret)
        if keyword == "minLength" and error.validator_value == 1:
            return [Violation(path, "must not be empty")]
        if keyword == "propertyNames":
            return [Violation(format_path(parts + [str(value)]), "is not %s" % schema.get("x-expected", "a valid key"))]
        if secret:
            return [Violation(path, "%s does not satisfy %s %s" % (SECRET_PLACEHOLDER, keyword, error.validator_value))]
        # minimum, maximum, exclusive*, maxLength, ...: jsonschema's wording is clear.
        return [Violation(path, error.message)]

    def _condition(self, error) -> str:
        """For a key required by an if/then clause, name the condition, e.g.
        ' (needed when kitchen_platform is openshift)'."""
        schema_path = list(error.schema_path)
        if len(schema_path) < 3 or schema_path[0] != "allOf" or schema_path[2] != "then":
            return ""
        condition = self.schema["allOf"][schema_path[1]].get("if", {}).get("properties", {})
        terms = ["%s is %s" % (k, v["const"]) for k, v in condition.items() if "const" in v]
        return " (needed when %s)" % " and ".join(terms) if terms else ""

    # -- the validated site ----------------------------------------------------------------
    def with_defaults(self, site: dict) -> dict:
        """A copy of the site with the schema's documented defaults filled in where a key is
        left out, inside objects the site has (or whose schema default is an object: {})."""
        return self._fill(copy.deepcopy(site), self.schema)

    def _fill(self, data, schema):
        schema = self._resolve(schema)
        if isinstance(data, dict):
            for key, sub in schema.get("properties", {}).items():
                default = sub.get("default", self._resolve(sub).get("default")) if isinstance(sub, dict) else None
                if key not in data and default is not None:
                    data[key] = copy.deepcopy(default)
                if key in data:
                    data[key] = self._fill(data[key], sub)
        elif isinstance(data, list) and isinstance(schema.get("items"), dict):
            data = [self._fill(item, schema["items"]) for item in data]
        return data

    def without_secrets(self, site: dict) -> dict:
        """A copy of the site without any secret value (writeOnly)."""
        view = copy.deepcopy(site)
        for parts in sorted(self.secret_paths(view), key=len, reverse=True):
            node = view
            for part in parts[:-1]:
                node = node[part]
            del node[parts[-1]]
        return view

    def public_view(self, site: dict) -> dict:
        """The site with its defaults and without any secret value (writeOnly), keyed without
        the kitchen_ prefix: what preflight publishes as the fact kitchen_site. Safe to show,
        log or cache; roles take secrets from the inventory variables themselves."""
        view = self.without_secrets(self.with_defaults(
            {k: v for k, v in site.items() if k in self.schema.get("properties", {})}))
        return {(k[len(SITE_PREFIX):] if k.startswith(SITE_PREFIX) else k): v for k, v in view.items()}

    # -- secrets ----------------------------------------------------------------------------
    def secret_paths(self, data, schema=None, parts=()):
        """Paths (lists) of the values in `data` whose schema marks them writeOnly."""
        schema = self._resolve(self.schema if schema is None else schema)
        if schema.get("writeOnly"):
            yield list(parts)
            return
        if isinstance(data, dict):
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for key, value in data.items():
                sub = props.get(key, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    yield from self.secret_paths(value, sub, parts + (key,))
        elif isinstance(data, list) and isinstance(schema.get("items"), dict):
            for index, value in enumerate(data):
                yield from self.secret_paths(value, schema["items"], parts + (index,))

    def _resolve(self, schema):
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                break
            node = self.schema
            for key in ref[2:].split("/"):
                node = node[key]
            schema = node
        return schema if isinstance(schema, dict) else {}

    def _plain_text_secrets(self, site: dict, raw_site: dict) -> list[Violation]:
        out = []
        for parts in self.secret_paths(site):
            raw = raw_site
            for part in parts:
                try:
                    raw = raw[part]
                except (KeyError, IndexError, TypeError):
                    raw = None  # the value came from a template higher up
                    break
            if raw is not None and is_plain_text_secret(raw):
                out.append(Violation(format_path(parts), "plain-text secret in the inventory: "
                                     "encrypt it with ansible-vault or read it with a lookup"))
        return out
