"""Phase 1 end to end with the real ansible-playbook: render, idempotence, check mode,
preflight failures, and secrets kept out of the output."""

import json
import shutil
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT, crd_dir, run_playbook, tree_digest

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_schemas import CrdCatalog, validate_tree

pytestmark = pytest.mark.playbook
SAMPLE = "inventories/openshift-sample"
K8S_VERSION = "1.31"  # kitchen_cluster.kubernetes_version of the sample


def render(render_dir, *args, inventory=SAMPLE):
    return run_playbook(inventory, "phase1.yml", "-e", "kitchen_delivery=render",
                        "-e", "kitchen_render_dir=%s" % render_dir, *args)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("render")
    first = render(out)
    assert first.rc == 0, first.output
    return out, first


def test_render_writes_tenant_manifests(rendered):
    out, run = rendered
    files = sorted(p.name for p in (out / "phase1" / "tenants").glob("*.yaml"))
    for tenant in ("kitchen-platform", "kitchen-finance"):
        assert "namespace_%s.yaml" % tenant in files
        assert "resourcequota_%s_kitchen-quota.yaml" % tenant in files
        assert "limitrange_%s_kitchen-limits.yaml" % tenant in files
        assert "networkpolicy_%s_kitchen-default-deny.yaml" % tenant in files
    assert "rolebinding_kitchen-finance_kitchen-edit.yaml" in files
    assert "rolebinding_kitchen-finance_kitchen-view.yaml" not in files  # finance has no view group
    assert run.recap()["failed"] == 0


def test_rendered_manifests_are_strictly_valid(rendered):
    out, _ = rendered
    crds = CrdCatalog(str(crd_dir()))
    count, errors = validate_tree(str(out), K8S_VERSION, crds)
    assert count == len([p for p in out.rglob("*.yaml") if p.name != "kustomization.yaml"]) > 40
    assert [str(e) for e in errors] == []


def test_kustomizations_list_exactly_the_rendered_files(rendered):
    out, _ = rendered
    component = out / "phase1" / "tenants"
    listed = yaml.safe_load((component / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in component.glob("*.yaml") if p.name != "kustomization.yaml")
    assert yaml.safe_load((out / "phase1" / "kustomization.yaml").read_text())["resources"] == [
        "ca_trust", "gpu_node_prep", "minio", "openshift_ai", "operator-gpu-operator-certified", "operator-nfd",
        "operator-rhods-operator", "registry_mirror", "selinux_labelling", "tenants"]


def test_tenant_fences_and_access(rendered):
    out, _ = rendered
    tenants = out / "phase1" / "tenants"
    deny = yaml.safe_load((tenants / "networkpolicy_kitchen-finance_kitchen-default-deny.yaml").read_text())
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    quota = yaml.safe_load((tenants / "resourcequota_kitchen-finance_kitchen-quota.yaml").read_text())
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "1"
    assert quota["spec"]["hard"]["pods"] == "50"  # role default where the tenant says nothing
    namespace = yaml.safe_load((tenants / "namespace_kitchen-finance.yaml").read_text())
    assert namespace["metadata"]["labels"]["opendatahub.io/dashboard"] == "true"
    binding = yaml.safe_load((tenants / "rolebinding_kitchen-platform_kitchen-admin.yaml").read_text())
    assert binding["roleRef"]["name"] == "admin"
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ai-platform-admins"}]
    gateway = tenants / "networkpolicy_kitchen-platform_kitchen-allow-from-kitchen-gateway.yaml"
    assert gateway.exists() and not (tenants / "networkpolicy_kitchen-finance_kitchen-allow-from-kitchen-gateway.yaml").exists()


def test_second_render_is_byte_identical_and_unchanged(rendered):
    out, _ = rendered
    before = tree_digest(out)
    again = render(out)
    assert again.rc == 0, again.output
    assert again.recap()["changed"] == 0
    assert tree_digest(out) == before


def test_check_mode_writes_nothing(tmp_path):
    out = tmp_path / "check"
    run = render(out, "--check", "--diff")
    assert run.rc == 0, run.output
    assert run.recap()["changed"] > 0  # it reports what it would write
    assert not out.exists()


def test_removed_tenant_files_are_pruned(tmp_path):
    out = tmp_path / "prune"
    assert render(out).rc == 0
    site = yaml.safe_load((ROOT / SAMPLE / "group_vars" / "all" / "site.yml").read_text())
    only_platform = [t for t in site["kitchen_tenants"] if t["name"] == "kitchen-platform"]
    run = render(out, "-e", json.dumps({"kitchen_tenants": only_platform}))
    assert run.rc == 0, run.output
    names = [p.name for p in (out / "phase1" / "tenants").iterdir()]
    assert not [n for n in names if "kitchen-finance" in n]
    assert "namespace_kitchen-platform.yaml" in names
    listed = yaml.safe_load((out / "phase1" / "tenants" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(n for n in names if n != "kustomization.yaml")


@pytest.mark.parametrize("extra", [[], ["--tags", "tenants"]], ids=["all", "tags-tenants"])
def test_broken_inventory_stops_in_preflight_listing_every_mistake(tmp_path, extra):
    out = tmp_path / "broken"
    run = render(out, *extra, inventory="tests/fixtures/inventories/broken")
    assert run.rc != 0
    assert "Preflight found 18 problem(s); nothing was changed." in run.output
    for line in [
        "kitchen_models[0].pvc_size: '40' is not a valid quantity like 40Gi",
        "kitchen_models[1].name: required key is missing",
        "kitchen_tenant: unknown site variable (did you mean 'kitchen_tenants'?)",
        "kitchen_adapters[1].name: 'helpdesk' is a duplicate of kitchen_adapters[0].name",
        "kitchen_gpu.enabled: 'yes' is a string, expected a boolean",
        "kitchen_models[0].source: 'hf://ibm-granite/granite-3.3-8b-instruct' is not a folder, s3://, pypi://, "
        "hf://<org>/<repo>@<40-hex commit> (not a branch like main)",
    ]:
        assert line in run.output
    assert "hunter2" not in run.output  # the plain-text secret is named, not shown
    assert not out.exists()
    assert "TASK [tenants" not in run.output


def test_missing_platform_tool_is_reported(tmp_path):
    run = run_playbook("inventories/local", "phase1.yml", "-e",
                       json.dumps({"preflight_tools_by_platform": {"podman": ["kitchen-no-such-tool"]}}))
    assert run.rc != 0
    assert "kitchen_platform podman needs the executable kitchen-no-such-tool on localhost, which was not found" in run.text


def test_podman_site_explains_tenants(tmp_path):
    # Only the tenants role (and preflight, always): the rest of phase 1 brings up the real kitchen.
    run = run_playbook("inventories/local", "phase1.yml", "--tags", "tenants", "-e",
                       json.dumps({"preflight_tools_by_platform": {"podman": ["python3"]}}))
    assert run.rc == 0, run.output
    assert "on a single host tenants are gateway consumers" in run.text


def test_vaulted_secrets_never_reach_the_output(tmp_path):
    inventory = tmp_path / "site"
    shutil.copytree(ROOT / SAMPLE, inventory)
    password = tmp_path / "vault-pass"
    password.write_text("test-only-password\n")
    secret, access = "s3cr3t-value-in-vault", "AKIA-ACCESS-IN-VAULT"
    encrypted = subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(password), secret, "--name", "x"],
        capture_output=True, text=True, check=True).stdout
    inline = "\n".join("  " + line if i else line for i, line in enumerate(encrypted.split(": ", 1)[1].rstrip().splitlines()))
    site = inventory / "group_vars" / "all" / "site.yml"
    site.write_text(site.read_text().replace(
        "  size: 500Gi\n", '  size: 500Gi\n  access_key: "{{ vault_access_key }}"\n  secret_key: %s\n' % inline))
    vault_file = inventory / "group_vars" / "all" / "vault.yml"
    vault_file.write_text("vault_access_key: %s\n" % access)
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password), str(vault_file)],
                   check=True, capture_output=True)
    run = run_playbook(str(inventory), "phase1.yml", "-vvv", "--vault-password-file", str(password),
                       "-e", "kitchen_delivery=render", "-e", "kitchen_render_dir=%s" % (tmp_path / "out"))
    assert run.rc == 0, run.output
    assert secret not in run.output and access not in run.output
    assert "plain-text secret" not in run.output


def cluster_vars(kubeconfig):
    return json.dumps({"kitchen_cluster": {"openshift_version": "4.18", "kubernetes_version": "1.31",
                                           "kubeconfig": str(kubeconfig)}})


def test_apply_goes_to_the_configured_cluster(tmp_path):
    """module_defaults hand the inventory's kubeconfig to the one batched apply task.
    Nothing listens on the loopback port, so the apply fails there, after preflight."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
        "users": [{"name": "nobody", "user": {"token": "not-a-real-token"}}]}))
    run = run_playbook(SAMPLE, "phase1.yml", "-e", cluster_vars(kubeconfig))
    assert run.rc != 0
    assert "TASK [manifest_delivery : Server-side apply the manifests of registry_mirror]" in run.output
    assert "host='127.0.0.1', port=9" in run.output
    assert "not-a-real-token" not in run.output


def test_missing_kubeconfig_stops_preflight(tmp_path):
    run = run_playbook(SAMPLE, "phase1.yml", "-e", cluster_vars(tmp_path / "absent"))
    assert run.rc != 0
    assert "kitchen_cluster.kubeconfig: %s does not exist on the controller" % (tmp_path / "absent") in run.text
    assert "TASK [manifest_delivery" not in run.output


def test_model_host_without_selinux_is_reported_and_skipped(tmp_path):
    run = run_playbook("tests/fixtures/inventories/model-host", "phase1.yml", "--tags", "selinux_labelling",
                       "-e", "kitchen_delivery=render", "-e", "kitchen_render_dir=%s" % tmp_path)
    assert run.rc == 0, run.output
    assert "SELinux is not enabled on localhost (disabled): nothing to label for /var/lib/kitchen/model-cache." in run.text
    after = run.output.split("TASK [selinux_labelling : Add the file-context rule of each directory]", 1)[1]
    assert after.split("TASK [", 1)[0].strip(" *\n").startswith("skipping: [localhost] => (item=/var/lib/kitchen/model-cache)")
    machine_config = tmp_path / "phase1" / "selinux_labelling" / "machineconfig_99-worker-kitchen-selinux-model-dirs.yaml"
    unit = yaml.safe_load(machine_config.read_text())["spec"]["config"]["systemd"]["units"][0]["contents"]
    assert "semanage fcontext -a -t container_file_t \"/var/lib/kitchen/model-cache(/.*)?\"" in unit
    assert "chcon" not in unit
