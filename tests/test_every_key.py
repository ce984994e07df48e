"""Every key the schema accepts works: a site that sets every optional key (the OpenShift sample
plus all of them, tests/fixtures/inventories/every-key) passes preflight and renders phases 1-3.
A key the schema accepts but a role's argument spec refuses fails here, not at a site."""

import pytest
import yaml

from conftest import ROOT, crd_dir, load_site, run_playbook
from test_openshift_flavours import fixture_dir  # noqa: F401 - the cluster fixture, bundled

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_schemas import CrdCatalog, validate_tree

EVERY_KEY = "tests/fixtures/inventories/every-key"
# Refused by preflight (docs/inventory.md): until phase 4, and on OpenShift the single host's keys.
REFUSED = {"kitchen_gateway", "kitchen_observability", "kitchen_adapters[].tenants",
           "kitchen_host", "kitchen_models[].serving.chat_format"}
SECRET = "every-key-test-secret-value"
PUSH_PASSWORD = "every-key-test-push-password"


def schema_paths(schema, node=None, path=""):
    """Every key path the schema describes: kitchen_models[].resources.cpu, kitchen_images.<name>."""
    node = schema if node is None else node
    while "$ref" in node:
        target = schema
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = dict(target, **{k: v for k, v in node.items() if k != "$ref"})
    if path:
        yield path
    for name, child in node.get("properties", {}).items():
        yield from schema_paths(schema, child, "%s.%s" % (path, name) if path else name)
    if isinstance(node.get("additionalProperties"), dict) and "properties" not in node:
        yield from schema_paths(schema, node["additionalProperties"], path + ".<name>")
    if isinstance(node.get("items"), dict):
        yield from schema_paths(schema, node["items"], path + "[]")


def present(data, path) -> bool:
    """Whether the site sets `path`: [] is any item of a list, <name> any key of a mapping."""
    head, _, rest = path.partition(".")
    name, brackets = head.split("[")[0], head.count("[]")
    values = list(data.values()) if name == "<name>" and isinstance(data, dict) else \
        [data[name]] if isinstance(data, dict) and name in data else []
    for _ in range(brackets):
        values = [item for value in values if isinstance(value, list) for item in value]
    return any(present(value, rest) for value in values) if rest else bool(values)


def refused(path) -> bool:
    return any(path == r or path.startswith(r + ".") or path.startswith(r + "[") for r in REFUSED)


def test_the_fixture_sets_every_optional_key_but_the_refused_ones(validator):
    schema = yaml.safe_load((ROOT / "schemas" / "site.schema.yaml").read_text())
    site = load_site(EVERY_KEY)
    missing = [p for p in schema_paths(schema) if not refused(p) and not present(site, p)]
    assert missing == []
    assert [str(v) for v in validator.violations(site)] == []


@pytest.fixture(scope="module")
def every_key_render(fixture_dir, tmp_path_factory):  # noqa: F811 - the imported fixture
    out = tmp_path_factory.mktemp("every-key")
    run = run_playbook(EVERY_KEY, "phase1.yml", str(ROOT / "playbooks" / "phase2.yml"),
                       str(ROOT / "playbooks" / "phase3.yml"),
                       "-e", "cluster_fixture_dir=%s" % fixture_dir, "-e", "kitchen_delivery=render",
                       "-e", "kitchen_render_dir=%s" % out, "-e", "kserve_lora_work_dir=%s-work" % out,
                       env={"KITCHEN_TEST_SECRET": SECRET, "KITCHEN_TEST_PUSH_PASSWORD": PUSH_PASSWORD})
    return out, run


def test_a_site_with_every_key_renders_phases_1_to_3(every_key_render):
    out, run = every_key_render
    assert run.rc == 0, run.output
    assert "Preflight passed." in run.text
    assert sorted(p.name for p in out.iterdir()) == ["phase1", "phase2", "phase3"]
    count, errors = validate_tree(str(out), "1.31", CrdCatalog(str(crd_dir())))
    assert count > 0 and [str(e) for e in errors] == []


def test_the_registry_push_credentials_stay_with_the_import(every_key_render):
    """The bundle import pushes with them; the cluster objects never carry them."""
    out, run = every_key_render
    rendered = "".join(p.read_text() for p in out.rglob("*.yaml"))
    assert "kitchen-import" not in rendered and PUSH_PASSWORD not in rendered
    assert SECRET not in run.output and PUSH_PASSWORD not in run.output
