"""What a real kube-apiserver refuses, as pure functions over plain dicts, for the emulator
(kube_emulator.py): immutable fields, CRD structural-schema pruning and validation, and the
field ownership of server-side apply. Each refusal is a Refused carrying the Status body a real
server answers with (k8s.io/apimachinery/pkg/api/errors: NewInvalid, NewApplyConflict,
NewBadRequest, NewConflict)."""

import copy
import decimal
import json
import re

import jsonschema

# ---------------------------------------------------------------------------------------------
# Status bodies


class Refused(Exception):
    """A request the API server answers with a Failure Status."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": message, "reason": reason, "code": code}
        if details is not None:
            self.body["details"] = details


def group_kind(group, kind):
    """schema.GroupKind.String(): 'Job.batch', or 'ConfigMap' for the core group."""
    return "%s.%s" % (kind, group) if group else kind


def group_resource(group, plural):
    return "%s.%s" % (plural, group) if group else plural


def render(value):
    """How a field error shows the value. Go prints scalars plainly and strings quoted; for
    structs it prints Go syntax (core.PodTemplateSpec{...}), which JSON stands in for here."""
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def cause(kind_of, field, body):
    """One field.Error: its type, path and ErrorBody(); str() of it is 'path: body'."""
    return {"reason": kind_of, "message": body, "field": field}


def invalid_value(field, value, detail):
    return cause("FieldValueInvalid", field, "Invalid value: %s: %s" % (render(value), detail))


def forbidden(field, detail):
    return cause("FieldValueForbidden", field, "Forbidden: " + detail)


def invalid(group, kind, name, causes):
    """422 Invalid, with the message of errs.ToAggregate(): one error as is, several in brackets."""
    errors = ["%s: %s" % (c["field"], c["message"]) for c in causes]
    text = errors[0] if len(errors) == 1 else "[%s]" % ", ".join(errors)
    return Refused(422, "Invalid", "%s %s is invalid: %s" % (group_kind(group, kind), json.dumps(name), text),
                   {"name": name, "group": group, "kind": kind, "causes": causes})


def bad_request(message):
    return Refused(400, "BadRequest", message)


# ---------------------------------------------------------------------------------------------
# Paths in objects

MISSING = object()


def get(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return MISSING
        obj = obj[key]
    return obj


def dotted(path):
    """'spec.template' for ('spec', 'template'); list indexes as [0]."""
    out = ""
    for key in path:
        out += "[%d]" % key if isinstance(key, int) else ("." if out else "") + key
    return out


# ---------------------------------------------------------------------------------------------
# Immutable fields of the built-in kinds the roles create


def _job_completions_mutable(old, new):
    """Elastic Indexed Jobs (GA in 1.31) may change completions, in tandem with parallelism."""
    spec = new.get("spec") or {}
    return spec.get("completionMode") == "Indexed" and spec.get("completions") == spec.get("parallelism")


# (group, kind): the spec fields ValidateImmutableField guards, in the order the validation
# reports them. batch/v1 Job: pkg/apis/batch/validation ValidateJobSpecUpdate (the template is
# mutable only for suspended Jobs that never started, which the emulated controller never keeps:
# its Jobs complete at once). apps/v1 Deployment: ValidateDeploymentUpdate (spec.selector).
IMMUTABLE = {
    ("batch", "Job"): [("completions", _job_completions_mutable), ("selector", None), ("template", None),
                       ("completionMode", None), ("podFailurePolicy", None), ("backoffLimitPerIndex", None),
                       ("managedBy", None), ("successPolicy", None)],
    ("apps", "Deployment"): [("selector", None)],
}

QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
SUFFIXES = {None: 1, "n": decimal.Decimal("1e-9"), "u": decimal.Decimal("1e-6"), "m": decimal.Decimal("1e-3"),
            "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18,
            "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def quantity(text):
    match = QUANTITY.match(str(text))
    return decimal.Decimal(match.group(1)) * SUFFIXES[match.group(2)] if match else None


def _pvc_update(old, new):
    """ValidatePersistentVolumeClaimUpdate, for a bound claim (the emulator binds every claim
    the way a provisioner would): only resources.requests.storage may change, and only grow;
    and volumeAttributesClassName."""
    def frozen(spec):
        spec = copy.deepcopy(spec or {})
        spec.pop("volumeAttributesClassName", None)
        ((spec.get("resources") or {}).get("requests") or {}).pop("storage", None)
        return spec

    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    causes = []
    if frozen(old_spec) != frozen(new_spec):
        causes.append(forbidden("spec", "spec is immutable after creation except resources.requests and "
                                        "volumeAttributesClassName for bound claims"))
    sizes = [quantity(get(spec, ("resources", "requests", "storage"))) for spec in (old_spec, new_spec)]
    if None not in sizes and sizes[1] < sizes[0]:
        causes.append(forbidden("spec.resources.requests.storage", "field can not be less than previous value"))
    return causes


def update_errors(group, kind, old, new):
    """The field errors of an update of a built-in kind from old to new."""
    if (group, kind) == ("", "PersistentVolumeClaim"):
        return _pvc_update(old, new)
    causes = []
    for name, allowed in IMMUTABLE.get((group, kind), []):
        before, after = get(old, ("spec", name)), get(new, ("spec", name))
        if before != after and not (allowed and allowed(old, new)):
            causes.append(invalid_value("spec." + name, None if after is MISSING else after, "field is immutable"))
    return causes


def identity_errors(url_name, url_namespace, body):
    """A body naming another object than the URL: 400, as the generic handlers answer
    (staging/src/k8s.io/apiserver/pkg/endpoints/handlers: update.go, patch.go)."""
    meta = body.get("metadata") or {}
    if url_name and meta.get("name") not in (None, url_name):
        raise bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                          % (meta["name"], url_name))
    if url_namespace and meta.get("namespace") not in (None, url_namespace):
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")


# ---------------------------------------------------------------------------------------------
# CRD structural schemas: pruning and validation

# The fields a custom resource's schema does not govern: apiVersion and kind are checked
# against the URL, metadata as ObjectMeta.
UNGOVERNED = ("apiVersion", "kind", "metadata")


def prune(value, schema, path=()):
    """Drop, in place, the fields a structural schema does not declare (apiextensions-apiserver
    pkg/apiserver/schema/pruning), honouring x-kubernetes-preserve-unknown-fields and
    additionalProperties. Returns the dropped paths."""
    dropped = []
    if not isinstance(schema, dict):
        return dropped
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or additional is True
        for key in list(value):
            if not path and key in UNGOVERNED:
                continue
            if properties and key in properties:
                dropped += prune(value[key], properties[key], path + (key,))
            elif isinstance(additional, dict):
                dropped += prune(value[key], additional, path + (key,))
            elif not keep_unknown:
                del value[key]
                dropped.append(path + (key,))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            dropped += prune(item, schema["items"], path + (index,))
    return dropped


def _as_jsonschema(node):
    """The OpenAPI v3 schema of a CRD as JSON Schema: nullable, x-kubernetes-int-or-string;
    formats and CEL rules (x-kubernetes-validations) are not checked here."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("format", "nullable", "x-kubernetes-validations") or value is None:
            continue  # (Route's CRD says anyOf: null)
        if key in ("properties", "patternProperties"):
            out[key] = {name: _as_jsonschema(schema) for name, schema in value.items()}
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_as_jsonschema(schema) for schema in value]
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _as_jsonschema(value)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        out["type"] = (out["type"] if isinstance(out["type"], list) else [out["type"]]) + ["null"]
        if "enum" in out:
            out["enum"] = out["enum"] + [None]
    return out


GO_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
            type(None): "null"}


def _schema_cause(error):
    """A jsonschema error as the field error kube-openapi's validator reports
    (apiextensions-apiserver pkg/apiserver/validation: ValidateCustomResource)."""
    path = tuple(error.absolute_path)
    field = dotted(path)
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in (error.instance or {})][0]
        return cause("FieldValueRequired", dotted(path + (missing,)), "Required value")
    if error.validator == "type":
        wanted = error.validator_value
        wanted = ",".join(wanted) if isinstance(wanted, list) else wanted
        actual = GO_TYPES.get(type(error.instance), "unknown")
        return cause("FieldValueTypeInvalid", field, "Invalid value: %s: %s in body must be of type %s: %s"
                     % (json.dumps(actual), field, wanted, json.dumps(actual)))
    if error.validator == "enum":
        return cause("FieldValueNotSupported", field, "Unsupported value: %s: supported values: %s"
                     % (render(error.instance), ", ".join(render(v) for v in error.validator_value)))
    return invalid_value(field, error.instance, "%s in body: %s" % (field, error.message))


_VALIDATORS = {}


def _validator(schema):
    """The JSON Schema validator of a served version, compiled once (it is kept with its
    schema, so the id stays the schema's)."""
    if id(schema) not in _VALIDATORS:
        governed = dict(schema, properties={k: v for k, v in (schema.get("properties") or {}).items()
                                            if k not in UNGOVERNED})
        governed["required"] = [name for name in schema.get("required", []) if name not in UNGOVERNED]
        if not governed["required"]:
            del governed["required"]
        _VALIDATORS[id(schema)] = (schema, jsonschema.Draft7Validator(_as_jsonschema(governed)))
    return _VALIDATORS[id(schema)][1]


def _unchanged(error, old):
    """Validation ratcheting (CRDValidationRatcheting, on by default since 1.30): an update may
    keep a value the schema rejects if it leaves it as it was (e.g. a status a controller set)."""
    path = tuple(error.absolute_path)
    if error.validator == "required":
        return all(get(old, path + (name,)) is MISSING for name in error.validator_value
                   if name not in (error.instance or {}))
    return get(old, path) == error.instance


def schema_errors(obj, schema, old=None):
    """The field errors of a (pruned) custom resource against its version's openAPIV3Schema;
    on an update (old), only those of the values it changes."""
    body = {key: value for key, value in obj.items() if key not in UNGOVERNED}
    errors = sorted(_validator(schema).iter_errors(body), key=lambda e: ([str(k) for k in e.absolute_path], e.validator))
    return [_schema_cause(error) for error in errors if old is None or not _unchanged(error, old)]


# ---------------------------------------------------------------------------------------------
# Server-side apply: who owns which field
#
# Ownership is kept per object as {manager key: set of paths}; a manager key is
# (name, "Apply") or (name, "Update", apiVersion), as managedFields entries are keyed. A path
# is a tuple of keys down to a scalar, a list (every list is atomic here) or an empty map, below
# metadata.labels, metadata.annotations and every top-level field but status.


def owned_paths(obj):
    paths = set()

    def walk(value, path):
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, path + (key,))
        else:
            paths.add(path)

    for key, value in obj.items():
        if key in ("metadata", "status", "apiVersion", "kind"):
            continue
        walk(value, (key,))
    for key in ("labels", "annotations"):
        if isinstance((obj.get("metadata") or {}).get(key), dict):
            walk(obj["metadata"][key], ("metadata", key))
    return paths


def overlaps(one, other):
    """Two paths touch the same field when one is the other or lies below it."""
    shorter = min(len(one), len(other))
    return one[:shorter] == other[:shorter]


def describe_manager(key):
    """printManager of k8s.io/apimachinery managedfields/internal/conflict.go."""
    if key[1] == "Update":
        return "%s using %s" % (json.dumps(key[0]), key[2])
    return json.dumps(key[0])


def without_nulls(value):
    """An apply configuration's nulls set nothing."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


def merge(base, patch, nulls_remove=False):
    """Maps merge key by key, everything else (lists too) is replaced; with nulls_remove (JSON
    merge patch, RFC 7386) a null removes the key."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None and nulls_remove:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, nulls_remove)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _remove(obj, path):
    """Remove a field, and the maps it leaves empty (never a top-level field)."""
    parents = [obj]
    for key in path[:-1]:
        parents.append(parents[-1].get(key) if isinstance(parents[-1], dict) else None)
    if not isinstance(parents[-1], dict):
        return
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 1, -1):
        if parents[depth] == {}:
            parents[depth - 1].pop(path[depth - 1], None)


def conflict(conflicts):
    """409 Conflict with the message of getConflictMessage (conflict.go)."""
    causes = [{"reason": "FieldManagerConflict", "message": "conflict with %s" % describe_manager(key),
               "field": "." + dotted(path)} for key, path in conflicts]
    if len(conflicts) == 1:
        key, path = conflicts[0]
        message = "Apply failed with 1 conflict: conflict with %s: .%s" % (describe_manager(key), dotted(path))
    else:
        lines = []
        for key in sorted({key for key, _ in conflicts}, key=describe_manager):
            lines.append("conflicts with %s:" % describe_manager(key))
            lines += ["- .%s" % dotted(path) for other, path in conflicts if other == key]
        message = "Apply failed with %d conflicts: %s" % (len(conflicts), "\n".join(lines))
    return Refused(409, "Conflict", message, {"causes": causes})


def apply(existing, applied, owners, manager, force):
    """Server-side apply of one manager's configuration to the existing object (None: create).
    Returns (new object, new owners), or raises the 409 of the fields another manager owns
    with another value (unless force, which moves their ownership to this manager)."""
    applied = without_nulls(applied)
    mine = (manager, "Apply")
    paths = owned_paths(applied)
    base = existing or {}
    merged = merge(base, applied)
    owners = {key: set(value) for key, value in owners.items()}
    conflicts = sorted(((key, path) for key, owned in owners.items() if key != mine for path in owned
                        if any(overlaps(path, p) for p in paths) and get(base, path) != get(merged, path)),
                       key=lambda c: (describe_manager(c[0]), c[1]))
    if conflicts and not force:
        raise conflict(conflicts)
    for key, path in conflicts:
        owners[key].discard(path)
    # Fields this manager applied before and no longer does are removed, unless another
    # manager still owns them.
    for path in owners.get(mine, set()) - paths:
        if any(overlaps(path, p) for p in paths):
            continue
        if not any(overlaps(path, q) for key, owned in owners.items() if key != mine for q in owned):
            _remove(merged, path)
    owners[mine] = paths
    return merged, {key: value for key, value in owners.items() if value}


def update(existing, new, owners, manager, api_version):
    """A create, replace or patch (operation Update): the manager takes the fields whose value
    it set or changed from everyone else; fields that no longer exist are nobody's."""
    mine = (manager, "Update", api_version)
    base = existing or {}
    present = owned_paths(new)
    changed = {path for path in present if get(base, path) != get(new, path)}
    result = {}
    for key, owned in owners.items():
        kept = {path for path in owned if get(new, path) is not MISSING
                and (key == mine or not any(overlaps(path, c) for c in changed))}
        if kept:
            result[key] = kept
    if changed:
        result[mine] = result.get(mine, set()) | changed
    return result
