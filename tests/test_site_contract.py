"""The site contract: valid sites pass, every mistake is reported at once with its path."""

import copy

import pytest

from conftest import ROOT, load_site

from ansible_collections.privateai.kitchen.plugins.module_utils.quantity import QuantityError, to_bytes, to_cores
from ansible_collections.privateai.kitchen.plugins.module_utils.quantity import is_cpu as is_cpu_quantity
from ansible_collections.privateai.kitchen.plugins.module_utils.quantity import is_size as is_storage_quantity
from ansible_collections.privateai.kitchen.plugins.module_utils.site_contract import (
    DEFERRED_SECRET,
    SECRET_PLACEHOLDER,
    is_plain_text_secret,
    replace_secrets,
)


def messages(violations):
    return [str(v) for v in violations]


@pytest.mark.parametrize("inventory", ["inventories/openshift-sample", "inventories/local"])
def test_shipped_inventories_are_valid(validator, inventory):
    assert messages(validator.violations(load_site(inventory))) == []


@pytest.fixture
def sample():
    return copy.deepcopy(load_site("inventories/openshift-sample"))


def test_the_issue_example_message(validator, sample):
    sample["kitchen_models"][0]["pvc_size"] = "40"
    assert messages(validator.violations(sample)) == [
        "kitchen_models[0].pvc_size: '40' is not a valid quantity like 40Gi"]


def test_broken_inventory_reports_every_mistake(validator):
    site = load_site("tests/fixtures/inventories/broken")
    found = messages(validator.violations(site, raw_site=site))
    expected = [
        "kitchen_adapters[1].base_model: 'granite-3b' is not a model in kitchen_models (did you mean 'granite-3-8b-instruct'?)",
        "kitchen_adapters[1].name: 'helpdesk' is a duplicate of kitchen_adapters[0].name",
        "kitchen_adapters[1].serving_version: '3.0.0' is not one of its versions: 1.0.0, 2.0.0",
        "kitchen_cluster.openshift_version: 4.18 is a number, expected a string",
        "kitchen_gpu.enabled: 'yes' is a string, expected a boolean",
        "kitchen_images.vllm: 'quay.io/vllm/vllm-openai:latest' is not an image pinned by digest like "
        "registry.example.internal/vllm/vllm-openai@sha256:<64 hex>",
        "kitchen_images.vllm: 'quay.io/vllm/vllm-openai:latest' is not in the internal registry: "
        "expected an image below registry.acme.internal:5000",
        "kitchen_models[0].pvc_sise: unknown key (did you mean 'pvc_size'?)",
        "kitchen_models[0].pvc_size: '40' is not a valid quantity like 40Gi",
        "kitchen_models[0].source: 'hf://ibm-granite/granite-3.3-8b-instruct' is not a folder, s3://, pypi://, "
        "hf://<org>/<repo>@<40-hex commit> (not a branch like main) or oci://<registry>/<repository>@sha256:<64 hex> "
        "(not a tag)",
        "kitchen_models[1].name: required key is missing",
        "kitchen_models[1].tenant: 'nobody' is not a tenant in kitchen_tenants (known: kitchen-finance)",
        "kitchen_platform: 'openshfit' is not one of: openshift, podman (did you mean 'openshift'?)",
        "kitchen_registry.mirrors[0].mirror: required key is missing",
        "kitchen_site_name: 'Broken_Site' is not a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters)",
        "kitchen_storage.secret_key: plain-text secret in the inventory: encrypt it with ansible-vault or read it with a lookup",
        "kitchen_tenant: unknown site variable (did you mean 'kitchen_tenants'?)",
        "kitchen_tenants[0].quota.cpu: 'lots' is not a CPU quantity like 500m or 4",
    ]
    assert found == expected


def test_missing_site_variables_are_named(validator, sample):
    del sample["kitchen_models"]
    del sample["kitchen_cluster"]
    assert messages(validator.violations(sample)) == [
        "kitchen_cluster: required site variable is missing (needed when kitchen_platform is openshift)",
        "kitchen_models: required site variable is missing",
    ]


def test_podman_site_needs_its_host(validator):
    site = load_site("inventories/local")
    del site["kitchen_host"]
    assert messages(validator.violations(site)) == [
        "kitchen_host: required site variable is missing (needed when kitchen_platform is podman)"]


def test_secret_values_are_never_echoed(validator, sample):
    sample["kitchen_storage"]["secret_key"] = "short"
    sample["kitchen_storage"]["access_key"] = ["a-list-holding-AKIA-SECRET"]
    found = messages(validator.violations(sample))
    assert found == [
        "kitchen_storage.access_key: %s is a list, expected a string" % SECRET_PLACEHOLDER,
        "kitchen_storage.secret_key: %s does not satisfy minLength 8" % SECRET_PLACEHOLDER,
    ]
    assert not any("short" in m or "AKIA" in m for m in found)


def test_containers_are_described_by_type_not_content(validator, sample):
    sample["kitchen_storage"] = ["endpoint", "secret"]
    assert messages(validator.violations(sample)) == [
        "kitchen_storage: a list is a list, expected a mapping"]


def test_secret_from_vault_or_lookup_is_accepted(validator, sample):
    sample["kitchen_storage"]["secret_key"] = "a-long-enough-secret"
    raw = copy.deepcopy(sample)
    raw["kitchen_storage"]["secret_key"] = "{{ vault_s3_secret_key }}"
    assert messages(validator.violations(sample, raw_site=raw)) == []
    raw["kitchen_storage"] = "{{ vault_storage }}"  # the whole mapping from a template
    assert messages(validator.violations(sample, raw_site=raw)) == []
    raw = copy.deepcopy(sample)
    assert messages(validator.violations(sample, raw_site=raw)) == [
        "kitchen_storage.secret_key: plain-text secret in the inventory: encrypt it with ansible-vault or read it with a lookup"]


def test_plain_text_secret_detection():
    assert is_plain_text_secret("hunter2")
    assert not is_plain_text_secret("{{ lookup('ansible.builtin.env', 'S3_SECRET') }}")
    assert not is_plain_text_secret(None)


def test_external_storage_needs_an_endpoint_and_each_tenants_keys(validator, sample):
    sample["kitchen_storage"]["type"] = "external"
    del sample["kitchen_storage"]["endpoint"]
    assert messages(validator.violations(sample)) == [
        "kitchen_storage.endpoint: required key is missing (kitchen_storage.type is external)"] + [
        "kitchen_storage.tenant_credentials.%s: required: an external object store needs each tenant's own keys "
        "(read-only on models, adapters and eval, read-write on its prefix '%s/' of the tenant-data bucket)"
        % (tenant, tenant) for tenant in ("kitchen-finance", "kitchen-platform")]
    sample["kitchen_storage"]["endpoint"] = "https://s3.acme.internal"
    sample["kitchen_storage"]["tenant_credentials"] = {
        tenant: {"access_key": "AK" + tenant, "secret_key": "secret-of-" + tenant}
        for tenant in ("kitchen-finance", "kitchen-platform", "kitchen-hr")}
    assert messages(validator.violations(sample)) == [
        "kitchen_storage.tenant_credentials.kitchen-hr: 'kitchen-hr' is not a tenant in kitchen_tenants"]


@pytest.mark.parametrize("inventory", ["inventories/openshift-sample", "inventories/local"])
def test_an_insecure_registry_is_refused_on_every_platform(validator, inventory):
    site = load_site(inventory)
    site["kitchen_registry"]["insecure"] = True
    assert messages(validator.violations(site)) == [
        "kitchen_registry.insecure: True is refused: serve it over TLS with a certificate from kitchen_ca"]


def test_inference_service_name_limit(validator, sample):
    sample["kitchen_models"][0]["name"] = "m" * 54
    sample["kitchen_adapters"] = []
    sample["kitchen_bundle"]["adapters"] = []  # they name the flavours
    (message,) = messages(validator.violations(sample))
    assert message.startswith("kitchen_models[0].name: 'mmmm")
    assert message.endswith("is not a DNS-1123 label of at most 53 characters (KServe adds '-predictor')")


def test_enum_and_range_messages(validator, sample):
    sample["kitchen_delivery"] = "gitops"
    sample["kitchen_models"][0]["serving"]["gpu_memory_utilization"] = 1.5
    sample["kitchen_tenants"] = []
    sample["kitchen_adapters"] = []
    sample["kitchen_bundle"]["adapters"] = []  # they name the flavours
    assert messages(validator.violations(sample)) == [
        "kitchen_delivery: 'gitops' is not one of: apply, render",
        "kitchen_models[0].serving.gpu_memory_utilization: 1.5 is greater than the maximum of 1",
        "kitchen_models[0].tenant: 'kitchen-platform' is not a tenant in kitchen_tenants (known: none)",
        "kitchen_tenants: needs at least 1 item(s)",
    ]


@pytest.mark.parametrize("value,valid", [
    ("40Gi", True), ("1.5Ti", True), ("500M", True), ("40", False), ("40gi", False), ("", False), (40, False),
])
def test_storage_quantity(value, valid):
    assert is_storage_quantity(value) is valid


@pytest.mark.parametrize("value,valid", [
    ("500m", True), ("4", True), (4, True), ("0.5", True), ("1.5Gi", False), ("lots", False), (True, False), (0, False),
])
def test_cpu_quantity(value, valid):
    assert is_cpu_quantity(value) is valid


@pytest.mark.parametrize("value,expected", [
    ("25Gi", 25 << 30), ("1.5Gi", 3 << 29), ("1Pi", 1 << 50), ("500M", 500 * 10 ** 6), ("2k", 2000), (4096, 4096),
])
def test_every_size_the_contract_accepts_is_read_as_the_same_bytes_later(value, expected):
    """One grammar: preflight accepted 1.5Gi and 1Pi while the bundle step refused them."""
    assert to_bytes(value) == expected
    assert is_storage_quantity(value) or isinstance(value, int)


@pytest.mark.parametrize("value", ["40", "40gi", "4 Gi", "", True, -1, None])
def test_a_size_the_contract_refuses_is_refused_later_with_its_name(value):
    with pytest.raises(QuantityError, match="kitchen_bundle.volume_size: .* is not a size like 25Gi"):
        to_bytes(value, "kitchen_bundle.volume_size")


def test_cpu_quantities_in_cores():
    assert [to_cores(v) for v in ("2", "0.5", "500m", 3)] == [2.0, 0.5, 0.5, 3.0]
    with pytest.raises(QuantityError, match="resources.cpu: '1.5Gi' is not a CPU quantity"):
        to_cores("1.5Gi", "resources.cpu")


def test_schema_documents_every_property():
    """Users read the schema as reference: each site variable carries a description."""
    import yaml
    schema = yaml.safe_load((ROOT / "schemas" / "site.schema.yaml").read_text())
    undocumented = [name for name, spec in schema["properties"].items() if not spec.get("description")]
    assert undocumented == []


def test_openshift_needs_its_images_operators_and_storage_credentials(validator, sample):
    del sample["kitchen_images"]["model_loader"]
    del sample["kitchen_operators"]["gpu"]
    del sample["kitchen_storage"]["tls_secret"]
    sample["kitchen_operators"]["nfd"]["catalog"] = "cs-redhat-operator-indx"
    assert messages(validator.violations(sample)) == [
        "kitchen_images.model_loader: required key is missing (phase 2 fills the model PVC from S3 with it)",
        "kitchen_operators.gpu: required key is missing (needed when kitchen_platform is openshift)",
        "kitchen_operators.nfd.catalog: 'cs-redhat-operator-indx' is not a catalog in kitchen_registry.catalogs "
        "(did you mean 'cs-redhat-operator-index'?)",
        "kitchen_storage.tls_secret: required key is missing (kitchen_storage.type minio on openshift)",
    ]


def test_gpu_operators_are_optional_without_gpus(validator, sample):
    sample["kitchen_gpu"]["enabled"] = False
    del sample["kitchen_operators"]["gpu"]
    del sample["kitchen_operators"]["nfd"]
    assert messages(validator.violations(sample)) == []



def test_the_public_view_carries_the_schema_defaults_and_no_secret(validator, sample):
    del sample["kitchen_cluster"]["validate_certs"]
    view = validator.public_view(sample)
    assert "kitchen_storage" not in view and "storage" in view  # keyed without the prefix
    assert view["cluster"]["validate_certs"] is True  # left out: the schema's default
    text = repr(view)
    for secret in validator.secret_paths(sample):
        node = sample
        for part in secret:
            node = node[part]
        assert str(node) not in text, "/".join(map(str, secret))
    assert view["storage"].get("secret_key") is None


@pytest.mark.parametrize("path,value,expected", [
    (("kitchen_models", 0, "pvc_size"), "0Gi", "kitchen_models[0].pvc_size: '0Gi' is zero, expected a size above zero like 40Gi"),
    (("kitchen_storage", "size"), "0.0Ti", "kitchen_storage.size: '0.0Ti' is zero, expected a size above zero like 40Gi"),
    (("kitchen_tenants", 0, "quota", "storage"), "0M",
     "kitchen_tenants[0].quota.storage: '0M' is zero, expected a size above zero like 40Gi"),
    (("kitchen_tenants", 0, "quota", "cpu"), "0",
     "kitchen_tenants[0].quota.cpu: '0' is zero, expected a CPU quantity above zero like 500m or 4"),
    (("kitchen_tenants", 0, "quota", "cpu"), "0m",
     "kitchen_tenants[0].quota.cpu: '0m' is zero, expected a CPU quantity above zero like 500m or 4"),
    (("kitchen_lora", "pvc_size"), "1Mi", None),
    (("kitchen_tenants", 1, "quota", "cpu"), "1m", None),
])
def test_zero_sizes_and_quotas_are_refused(validator, sample, path, value, expected):
    node = sample
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[path[-1]] = value
    assert messages(validator.violations(sample)) == ([expected] if expected else [])


@pytest.mark.parametrize("path,value,expected", [
    (("kitchen_adapters", 0, "versions"), ["1.0.0", "1.1.0", "1.0.0"],
     ["kitchen_adapters[0].versions[2]: '1.0.0' is a duplicate of kitchen_adapters[0].versions[0]"]),
    (("kitchen_gpu", "nodes"), ["gpu-1", "gpu-1", "gpu-1"],
     ["kitchen_gpu.nodes[1]: 'gpu-1' is a duplicate of kitchen_gpu.nodes[0]",
      "kitchen_gpu.nodes[2]: 'gpu-1' is a duplicate of kitchen_gpu.nodes[0]"]),
    (("kitchen_tenants", 0, "groups", "admin"), ["ai-platform-admins", "ai-platform-admins"],
     ["kitchen_tenants[0].groups.admin[1]: 'ai-platform-admins' is a duplicate of kitchen_tenants[0].groups.admin[0]"]),
])
def test_duplicates_in_lists_of_values_are_named(validator, sample, path, value, expected):
    node = sample
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert messages(validator.violations(sample)) == expected


def test_a_secret_is_never_echoed_by_the_transport_rules(validator, sample):
    sample["kitchen_storage"]["secret_key"] = "http://not-a-url-but-a-secret"
    assert messages(validator.violations(sample)) == []


def test_secrets_are_replaced_before_templating_without_copying_the_rest(validator):
    raw = load_site("inventories/openshift-sample")
    deferred = replace_secrets(validator, raw)
    assert deferred["kitchen_storage"]["access_key"] == deferred["kitchen_storage"]["secret_key"] == DEFERRED_SECRET
    assert "lookup('ansible.builtin.password'" in raw["kitchen_storage"]["access_key"]  # the inventory untouched
    assert deferred["kitchen_models"] is raw["kitchen_models"]  # no secret there: the value itself
    assert messages(validator.violations(deferred)) == []  # the stand-in satisfies every secret's schema
    whole = {"kitchen_storage": "{{ vault_storage }}"}
    assert replace_secrets(validator, whole) == whole
