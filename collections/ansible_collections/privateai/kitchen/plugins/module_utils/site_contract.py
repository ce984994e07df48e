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

import difflib
import re
from dataclasses import dataclass

SITE_PREFIX = "kitchen_"
SECRET_PLACEHOLDER = "<secret>"

# Kubernetes quantities. Storage and memory need a unit: a bare '40' is 40 bytes, which is
# never what a site means by a model volume.
_STORAGE_QUANTITY = re.compile(r"^(\d+(\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)$")
_CPU_QUANTITY = re.compile(r"^(\d+(\.\d{1,3})?|\d+m)$")

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    message: str

    def __str__(self) -> str:
        return "%s: %s" % (self.path, self.message)


def is_storage_quantity(value) -> bool:
    return isinstance(value, str) and bool(_STORAGE_QUANTITY.match(value))


def is_cpu_quantity(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, str) and bool(_CPU_QUANTITY.match(value))


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


def _did_you_mean(word, candidates) -> str:
    matches = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return " (did you mean '%s'?)" % matches[0] if matches else ""


class SiteValidator:
    """Validates a site description (a dict of kitchen_* variables) against the schema."""

    def __init__(self, schema: dict):
        import jsonschema

        self.schema = schema
        checker = jsonschema.FormatChecker()
        checker.checks("storage-quantity")(is_storage_quantity)
        checker.checks("cpu-quantity")(is_cpu_quantity)
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        self._validator = validator_class(schema, format_checker=checker)

    # -- public -----------------------------------------------------------------------------
    def violations(self, site: dict, raw_site: dict | None = None) -> list[Violation]:
        """Every violation of the site, sorted by path. `raw_site` is the untemplated
        inventory data, used to catch plain-text secrets."""
        found: set[Violation] = set()
        known = set(self.schema.get("properties", {}))
        for name in site:
            if name not in known:
                found.add(Violation(name, "unknown site variable" + _did_you_mean(name, known)))
        schema_site = {k: v for k, v in site.items() if k in known}
        for error in self._validator.iter_errors(schema_site):
            found.update(self._explain(error))
        found.update(self._semantic_violations(schema_site))
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
                Violation(format_path(parts + [key]), "unknown key" + _did_you_mean(key, allowed))
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
        if keyword in ("pattern", "format"):
            expected = schema.get("x-expected") or ("matching %s" % error.validator_value)
            return [Violation(path, "%s is not %s" % (show_value(value, secret), expected))]
        if keyword in ("enum", "const"):
            options = error.validator_value if keyword == "enum" else [error.validator_value]
            return [Violation(path, "%s is not one of: %s%s" % (
                show_value(value, secret),
                ", ".join(str(o) for o in options),
                _did_you_mean(value, options) if isinstance(value, str) else "",
            ))]
        if keyword == "minItems":
            return [Violation(path, "needs at least %d item(s)" % error.validator_value)]
        if keyword == "minProperties":
            return [Violation(path, "needs at least %d key(s)" % error.validator_value)]
        if keyword == "uniqueItems":
            return [Violation(path, "has duplicate items")]
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

    # -- rules JSON Schema cannot express --------------------------------------------------
    def _semantic_violations(self, site: dict) -> list[Violation]:
        out: list[Violation] = []

        def names_of(var):
            items = site.get(var)
            if not isinstance(items, list):
                return None  # reported by the schema; no cascade of reference errors
            seen = {}
            for index, item in enumerate(items):
                name = item.get("name") if isinstance(item, dict) else None
                if not isinstance(name, str):
                    continue
                if name in seen:
                    out.append(Violation(
                        "%s[%d].name" % (var, index),
                        "%r is a duplicate of %s[%d].name" % (name, var, seen[name]),
                    ))
                else:
                    seen[name] = index
            return seen

        models = names_of("kitchen_models")
        names_of("kitchen_adapters")  # duplicates only
        tenants = names_of("kitchen_tenants")

        def must_reference(path, value, known, what):
            if known is not None and isinstance(value, str) and value not in known:
                out.append(Violation(path, "%r is not %s%s" % (
                    value, what, _did_you_mean(value, known) or " (known: %s)" % (", ".join(sorted(known)) or "none"))))

        for index, model in enumerate(site.get("kitchen_models") or []):
            if isinstance(model, dict):
                must_reference("kitchen_models[%d].tenant" % index, model.get("tenant"), tenants,
                               "a tenant in kitchen_tenants")
        for index, adapter in enumerate(site.get("kitchen_adapters") or []):
            if not isinstance(adapter, dict):
                continue
            must_reference("kitchen_adapters[%d].base_model" % index, adapter.get("base_model"), models,
                           "a model in kitchen_models")
            versions = adapter.get("versions")
            serving = adapter.get("serving_version")
            if isinstance(versions, list) and isinstance(serving, str) and serving not in versions:
                out.append(Violation("kitchen_adapters[%d].serving_version" % index,
                                     "%r is not one of its versions: %s" % (serving, ", ".join(map(str, versions)))))
            for t_index, tenant in enumerate(adapter.get("tenants") or []):
                must_reference("kitchen_adapters[%d].tenants[%d]" % (index, t_index), tenant, tenants,
                               "a tenant in kitchen_tenants")

        out.extend(self._bundle_references(site, models, must_reference))
        out.extend(self._openshift_needs(site))

        storage = site.get("kitchen_storage")
        if isinstance(storage, dict) and storage.get("type") == "external" and not storage.get("endpoint"):
            out.append(Violation("kitchen_storage.endpoint", "required key is missing (kitchen_storage.type is external)"))
        registry = site.get("kitchen_registry")
        if site.get("kitchen_platform") == "openshift" and isinstance(registry, dict) and registry.get("insecure") is True:
            out.append(Violation("kitchen_registry.insecure",
                                 "True is refused on openshift: serve the registry over TLS and trust kitchen_ca"))
        return out

    @staticmethod
    def _bundle_references(site: dict, models, must_reference) -> list[Violation]:
        """What the bundle carries must be something the site serves: a model of
        kitchen_models, a version of a kitchen_adapters flavour."""
        out: list[Violation] = []
        bundle = site.get("kitchen_bundle")
        if not isinstance(bundle, dict):
            return out
        for index, model in enumerate(bundle.get("models") or []):
            if isinstance(model, dict):
                must_reference("kitchen_bundle.models[%d].name" % index, model.get("name"), models,
                               "a model in kitchen_models")
        flavours = {a.get("name"): a for a in site.get("kitchen_adapters") or [] if isinstance(a, dict)}
        for index, adapter in enumerate(bundle.get("adapters") or []):
            if not isinstance(adapter, dict):
                continue
            name, version = adapter.get("name"), adapter.get("version")
            must_reference("kitchen_bundle.adapters[%d].name" % index, name, set(flavours),
                           "a flavour in kitchen_adapters")
            versions = (flavours.get(name) or {}).get("versions")
            if isinstance(versions, list) and isinstance(version, str) and version not in versions:
                out.append(Violation("kitchen_bundle.adapters[%d].version" % index, "%r is not one of %s's versions: %s"
                                     % (version, name, ", ".join(map(str, versions)))))
        return out

    # What the OpenShift roles need beyond the schema's required keys.
    _OPENSHIFT_IMAGES = {
        "vllm": "phase 2 serves the base model with it",
        "model_loader": "phase 2 fills the model PVC from S3 with it",
        "smoke_test": "phase 2 tastes the model from inside the cluster with it",
    }

    @staticmethod
    def _openshift_needs(site: dict) -> list[Violation]:
        if site.get("kitchen_platform") != "openshift":
            return []
        out = []
        images = site.get("kitchen_images")
        storage = site.get("kitchen_storage") if isinstance(site.get("kitchen_storage"), dict) else {}
        needed_images = dict(SiteValidator._OPENSHIFT_IMAGES)
        if storage.get("type") == "minio":
            needed_images["minio"] = "kitchen_storage.type minio deploys it"
        if not isinstance(images, dict):
            if images is None:
                out.append(Violation("kitchen_images", "required site variable is missing (needed when kitchen_platform is openshift)"))
        else:
            for key, why in sorted(needed_images.items()):
                if key not in images:
                    out.append(Violation("kitchen_images.%s" % key, "required key is missing (%s)" % why))
        if storage:
            # Every tenant gets a data connection with these keys; a deployed MinIO serves TLS.
            keys = ("access_key", "secret_key") + (("tls_secret",) if storage.get("type") == "minio" else ())
            for key in keys:
                if key not in storage:
                    out.append(Violation("kitchen_storage.%s" % key, "required key is missing (%s)" % (
                        "kitchen_storage.type minio on openshift" if key == "tls_secret"
                        else "the data connections of OpenShift AI need it")))
        registry = site.get("kitchen_registry") if isinstance(site.get("kitchen_registry"), dict) else {}
        catalogs = {c.get("name") for c in registry.get("catalogs") or [] if isinstance(c, dict)}
        operators = site.get("kitchen_operators")
        operators = operators if isinstance(operators, dict) else {}
        needed = ["openshift_ai"]
        gpu = site.get("kitchen_gpu")
        if not isinstance(gpu, dict) or gpu.get("enabled", True) is not False:
            needed += ["nfd", "gpu"]
        for key in needed:
            if key not in operators:
                out.append(Violation("kitchen_operators.%s" % key, "required key is missing (needed when kitchen_platform is openshift)"))
        for key, operator in sorted(operators.items()):
            catalog = operator.get("catalog") if isinstance(operator, dict) else None
            if isinstance(catalog, str) and catalog not in catalogs:
                out.append(Violation("kitchen_operators.%s.catalog" % key, "%r is not a catalog in kitchen_registry.catalogs%s" % (
                    catalog, _did_you_mean(catalog, catalogs) or " (known: %s)" % (", ".join(sorted(catalogs)) or "none"))))
        return out

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


def is_plain_text_secret(raw) -> bool:
    """True for a literal string written in clear in an inventory file or on the command line."""
    if not isinstance(raw, str):
        return False
    type_name = type(raw).__name__
    if "Encrypted" in type_name or "Vault" in type_name:
        return False  # inline !vault value
    if "{{" in raw or "{%" in raw:
        return False  # a lookup or a vault variable
    origin = _origin_path(raw)
    if origin and _is_vault_file(origin):
        return False  # the whole vars file is vault-encrypted
    return True


def _origin_path(value):
    try:  # ansible-core 2.19 data tagging records where each inventory value came from
        from ansible._internal._datatag._tags import Origin  # pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover - other ansible-core lines
        return None
    origin = Origin.get_tag(value)
    return getattr(origin, "path", None) if origin else None


def _is_vault_file(path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(14) == b"$ANSIBLE_VAULT"
    except OSError:
        return False
