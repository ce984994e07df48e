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
    assert [v for v in defaults if not v.startswith(role + "_")] == [], "defaults must carry the role prefix"
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
    assert (role_dir(role) / "tasks" / "main.yml").is_file()


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
    first = plays[0]["roles"][0]
    assert first["role"] == "preflight"
    assert "always" in first["tags"]
    # A failed preflight must stop the later plays of the phase too.
    assert plays[0].get("any_errors_fatal") is True or len(plays) == 1
