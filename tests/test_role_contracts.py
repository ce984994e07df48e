"""Conventions every role and playbook keeps (DESIGN.md): they are what users rely on."""

import ast
import re

import pytest
import yaml

from conftest import ROLE_GROUPS, ROOT, role_dir

ROLES = sorted(p.name for group in ROLE_GROUPS for p in (ROOT / "roles" / group).iterdir() if p.is_dir())
PHASE_PLAYBOOKS = sorted((ROOT / "playbooks").glob("phase*.yml"))


def role_file(role, *parts):
    return yaml.safe_load((role_dir(role) / "/".join(parts)).read_text())


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_agree(role):
    defaults = role_file(role, "defaults", "main.yml") or {}
    spec = role_file(role, "meta", "argument_specs.yml")["argument_specs"]["main"]
    options = spec["options"]
    assert spec.get("short_description")
    # kitchen_defaults holds the shared kitchen_* values; every other role prefixes its own.
    prefix = "kitchen_" if role == "kitchen_defaults" else role + "_"
    assert [v for v in defaults if not v.startswith(prefix)] == [], "defaults must carry the role prefix"
    assert sorted(set(defaults) - set(options)) == [], "defaults missing from argument_specs"
    optional = {name for name, opt in options.items() if not opt.get("required")}
    assert sorted(optional - set(defaults)) == [], "optional arguments need a default in defaults/main.yml"
    required_with_default = [n for n, o in options.items() if o.get("required") and n in defaults]
    assert required_with_default == []
    # Defaults live in defaults/main.yml only, so the two can never drift apart.
    assert [n for n, o in options.items() if "default" in o] == []


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_describe_list_elements(role):
    def walk(options, path):
        for name, opt in options.items():
            assert "type" in opt, "%s%s has no type" % (path, name)
            if opt["type"] == "list":
                assert "elements" in opt, "%s%s: list without elements" % (path, name)
            walk(opt.get("options", {}), path + name + ".")
    walk(role_file(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"], "")


@pytest.mark.parametrize("role", ROLES)
def test_main_tasks_exist(role):
    # kitchen_defaults is values only (a dependency of every role), like kubespray_defaults.
    assert (role_dir(role) / "tasks" / "main.yml").is_file() or role == "kitchen_defaults"


def test_role_fallbacks_match_schema_defaults():
    """A role's `kitchen_x | default(v)` must be the schema's documented default of kitchen_x."""
    schema = yaml.safe_load((ROOT / "schemas" / "site.schema.yaml").read_text())
    checked = 0
    for path in sorted((ROOT / "roles").glob("*/*/defaults/main.yml")):
        for var, key, literal in re.findall(r"\b(kitchen_\w+)(?:\.(\w+))?\s*\|\s*default\(([^()]*)\)", path.read_text()):
            try:
                value = ast.literal_eval(literal.replace("true", "True").replace("false", "False"))
            except (ValueError, SyntaxError):
                continue  # an expression, not a literal default
            prop = schema["properties"][var]
            if key:
                prop = prop.get("properties", {}).get(key, {})
            where = "%s: %s%s" % (path.relative_to(ROOT), var, "." + key if key else "")
            if "default" in prop:
                assert prop["default"] == value, "%s defaults to %r, schema says %r" % (where, value, prop["default"])
            else:  # no documented default: the fallback may only mean "not set"
                assert value in ("", [], {}, None), "%s falls back to %r, the schema documents no default" % (where, value)
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("playbook", PHASE_PLAYBOOKS, ids=lambda p: p.name)
def test_phase_playbooks_run_preflight_first_and_always(playbook):
    plays = yaml.safe_load(playbook.read_text())
    assert plays[0]["ansible.builtin.import_playbook"] == "preflight.yml"
    (preflight,) = yaml.safe_load((ROOT / "playbooks" / "preflight.yml").read_text())
    first = preflight["roles"][0]
    assert first["role"] == "preflight"
    assert "always" in first["tags"]
    # A failed preflight must stop the later plays of the phase too.
    assert preflight.get("any_errors_fatal") is True


def _role_group(name):
    found = [group for group in ROLE_GROUPS if (ROOT / "roles" / group / name).is_dir()]
    assert len(found) == 1, "role %s is in %s" % (name, found)
    return found[0]


@pytest.mark.parametrize("playbook", PHASE_PLAYBOOKS, ids=lambda p: p.name)
def test_each_platform_play_uses_only_its_platform_roles(playbook):
    """The tree shows the platform: a play for OpenShift runs roles/openshift and roles/common
    roles only, a play for one host roles/podman and roles/common ones."""
    plays = [p for p in yaml.safe_load(playbook.read_text()) if "hosts" in p and "&kitchen_" in p["hosts"]]
    assert {p["hosts"].rsplit("&", 1)[1] for p in plays} == {"kitchen_openshift", "kitchen_podman"}
    for play in plays:
        platform = play["hosts"].rsplit("&kitchen_", 1)[1]
        groups = {_role_group(r["role"]) for r in play["roles"]}
        assert groups <= {"common", platform}, "%s: %s runs %s roles" % (playbook.name, play["name"], groups)


def test_site_runs_every_phase_that_exists():
    imported = [p["ansible.builtin.import_playbook"] for p in yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())]
    assert imported == [p.name for p in PHASE_PLAYBOOKS]


def test_derived_values_are_defined_once():
    """kitchen_defaults derives the shared values; no other role falls back on its own."""
    shared = ["kitchen_host.data_dir", "kitchen_delivery |", "kitchen_cluster.wait_timeout", "kitchen_render_dir",
              "aws-connection-kitchen-s3", "kitchen-trusted-ca", "kitchen_host.network_name"]
    for path in sorted((ROOT / "roles").glob("*/*/defaults/main.yml")) + sorted((ROOT / "roles").glob("*/*/tasks/*.yml")):
        if path.parts[-3] == "kitchen_defaults":
            continue
        text = path.read_text()
        assert [s for s in shared if s in text] == [], path.relative_to(ROOT)
        assert not re.search(r"max_model_len \| default\(\d", text), path.relative_to(ROOT)
