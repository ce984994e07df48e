"""The rules a user expects that the schema alone cannot express, as tables against the pure
rule functions; each row names the variable path, the value and what was expected."""

import copy

import pytest

from conftest import ROOT, load_site

from ansible_collections.privateai.kitchen.plugins.module_utils import site_files, site_limits, site_rules, site_safety

DIGEST = "@sha256:" + "a" * 64
SAMPLE = load_site("inventories/openshift-sample")


def messages(violations):
    return [str(v) for v in violations]


def site(_base=None, **changes):
    """The sample (or _base) with `changes` applied: {'kitchen_lora.max_loras': 9} sets one
    key, a value of None deletes it."""
    data = copy.deepcopy(SAMPLE if _base is None else _base)
    for dotted, value in changes.items():
        parts = dotted.replace("[", ".").replace("]", "").split(".")
        node = data
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        last = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
        if value is None:
            del node[last]
        elif isinstance(node, list) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return data


def test_the_sample_breaks_no_rule():
    assert messages(site_rules.violations(site()) + site_limits.violations(site()) + site_safety.violations(site())) == []


@pytest.mark.parametrize("changes,expected", [
    ({"kitchen_images.vllm": "quay.io/vllm/vllm-openai" + DIGEST},
     ["kitchen_images.vllm: 'quay.io/vllm/vllm-openai%s' is not in the internal registry: expected an image below "
      "registry.acme.internal:5000 or registry.acme.internal:5000/minio or registry.acme.internal:5000/nvidia or "
      "registry.acme.internal:5000/redhat or registry.acme.internal:5000/vllm" % DIGEST]),
    # A look-alike host is not the registry: the prefix ends at a '/'.
    ({"kitchen_images.smoke_test": "registry.acme.internal:50001/ubi9" + DIGEST,
      "kitchen_registry.mirrors": []},
     ["kitchen_images.smoke_test: 'registry.acme.internal:50001/ubi9%s' is not in the internal registry: "
      "expected an image below registry.acme.internal:5000" % DIGEST]),
    # A mirror location outside the registry host (a second internal registry) is allowed.
    ({"kitchen_images.vllm": "mirror.acme.internal/vllm/vllm-openai" + DIGEST,
      "kitchen_registry.mirrors": [{"source": "quay.io/vllm", "mirror": "mirror.acme.internal/vllm"}]}, []),
    ({"kitchen_registry.catalogs[0].image": "registry.redhat.io/redhat/redhat-operator-index" + DIGEST,
      "kitchen_registry.mirrors": []},
     ["kitchen_registry.catalogs[0].image: 'registry.redhat.io/redhat/redhat-operator-index%s' is not in the "
      "internal registry: expected an image below registry.acme.internal:5000" % DIGEST]),
])
def test_images_come_from_the_internal_registry_and_its_mirrors(changes, expected):
    assert messages(site_safety.images_outside_registry(site(**changes))) == expected


@pytest.mark.parametrize("changes,expected", [
    ({"kitchen_storage.endpoint": "http://minio.kitchen-storage.svc:9000"},
     ["kitchen_storage.endpoint: 'http://minio.kitchen-storage.svc:9000' is plain HTTP: use https:// with a "
      "certificate from kitchen_ca (data and credentials cross this connection)"]),
    ({"kitchen_bundle": {"dir": "/b", "s3_endpoint": "HTTP://s3.acme.internal",
                         "source_s3": {"endpoint": "http://s3.example.com", "access_key": "a", "secret_key": "b"}}},
     ["kitchen_bundle.s3_endpoint: 'HTTP://s3.acme.internal' is plain HTTP: use https:// with a certificate from "
      "kitchen_ca (data and credentials cross this connection)",
      "kitchen_bundle.source_s3.endpoint: 'http://s3.example.com' is plain HTTP: use https:// with a certificate "
      "from kitchen_ca (data and credentials cross this connection)"]),
    ({"kitchen_models[0].source": "http://models.acme.internal/granite"},
     ["kitchen_models[0].source: 'http://models.acme.internal/granite' is plain HTTP: use https:// with a "
      "certificate from kitchen_ca (data and credentials cross this connection)"]),
    ({"kitchen_cluster.validate_certs": False},
     ["kitchen_cluster.validate_certs: False is refused: TLS verification stays on; trust kitchen_ca instead"]),
    ({"kitchen_registry.insecure": True},
     ["kitchen_registry.insecure: True is refused: serve it over TLS with a certificate from kitchen_ca"]),
    ({"kitchen_registry.insecure": False, "kitchen_cluster.validate_certs": True}, []),
])
def test_tls_wherever_data_or_credentials_flow(changes, expected):
    assert messages(site_safety.plain_transport(site(**changes))) == expected


@pytest.mark.parametrize("changes,expected", [
    ({"kitchen_gateway": {"hostname": "llm.apps.acme.internal"}}, ["kitchen_gateway: not supported yet (phase 4)"]),
    ({"kitchen_gateway": {"enabled": True}}, ["kitchen_gateway: not supported yet (phase 4)"]),
    ({"kitchen_gateway": {"enabled": False}}, []),
    ({"kitchen_observability": {"alerts": {"error_rate": 0.02}}}, ["kitchen_observability: not supported yet (phase 4)"]),
    ({"kitchen_adapters[1].tenants": ["kitchen-finance"]},
     ["kitchen_adapters[1].tenants: not supported yet (phase 4: the gateway decides which tenants call a flavour)"]),
    ({"kitchen_adapters[1].tenants": []}, []),
])
def test_keys_nothing_honours_yet_are_refused(changes, expected):
    assert messages(site_safety.not_supported(site(**changes))) == expected


MODEL = "kitchen_models[0]"
TENANT = "kitchen_tenants[0].quota"


@pytest.mark.parametrize("changes,expected", [
    ({TENANT + ".gpus": 0},
     ["kitchen_tenants[0].quota.gpus: 0 cannot hold the 1 GPU(s) that kitchen_models[0] needs"]),
    ({TENANT + ".cpu": "3500m"},
     ["kitchen_tenants[0].quota.cpu: '3500m' cannot hold the 4 CPU that kitchen_models[0] needs"]),
    ({TENANT + ".memory": "30Gi"},
     ["kitchen_tenants[0].quota.memory: '30Gi' cannot hold the 32Gi of memory that kitchen_models[0] needs"]),
    # Weights volume plus the adapter volume of a model with flavours.
    ({TENANT + ".storage": "45Gi", "kitchen_lora.pvc_size": "10Gi"},
     ["kitchen_tenants[0].quota.storage: '45Gi' cannot hold the 50Gi of volumes that kitchen_models[0] needs"]),
    ({TENANT + ".pvcs": 1},
     ["kitchen_tenants[0].quota.pvcs: 1 cannot hold the 2 volume(s) that kitchen_models[0] needs"]),
    # Two models in one tenant add up; each fits alone.
    ({"kitchen_models[1]": {"name": "granite-b", "source": "hf://x/y", "tenant": "kitchen-platform", "pvc_size": "1Gi",
                            "resources": {"gpus": 2, "memory": "1Gi", "cpu": 1}}},
     ["kitchen_tenants[0].quota.gpus: 2 cannot hold the 3 GPU(s) that kitchen_models[0], kitchen_models[1] need"]),
    # The model's tenant decides: kitchen-finance has one GPU.
    ({MODEL + ".tenant": "kitchen-finance", MODEL + ".resources.gpus": 2},
     ["kitchen_tenants[1].quota.gpus: 1 cannot hold the 2 GPU(s) that kitchen_models[0] needs"]),
    # Only values the site gives count: no quota key or no request, no comparison.
    ({TENANT + ".gpus": None, MODEL + ".resources": None}, []),
    # Unreadable values are the schema's to report.
    ({TENANT + ".cpu": "lots"}, []),
])
def test_what_the_models_request_fits_their_tenants_quota(changes, expected):
    assert messages(site_limits.quota_fit(site(**changes))) == expected


@pytest.mark.parametrize("changes,expected", [
    ({"kitchen_lora.max_loras": 9},
     ["kitchen_lora.max_cpu_loras: 8 is less than kitchen_lora.max_loras (9): vLLM caches at least the adapters of "
      "one batch in CPU memory"]),
    ({"kitchen_lora.max_cpu_loras": 1},
     ["kitchen_lora.max_cpu_loras: 1 is less than kitchen_lora.max_loras (4): vLLM caches at least the adapters of "
      "one batch in CPU memory",
      "kitchen_lora.max_cpu_loras: 1 is less than the 2 flavours served on granite-3-8b-instruct (helpdesk, summarise)"]),
    ({"kitchen_lora.max_cpu_loras": None, "kitchen_lora.max_loras": 1},
     ["kitchen_lora.max_loras: 1 is less than the 2 flavours served on granite-3-8b-instruct (helpdesk, summarise)"]),
    ({"kitchen_lora.max_cpu_loras": 2, "kitchen_lora.max_loras": 2}, []),
    # The single host's llama-server loads every version at start: no bound to hold them to.
    ({"kitchen_platform": "podman", "kitchen_lora.max_cpu_loras": None, "kitchen_lora.max_loras": 1}, []),
    ({"kitchen_lora": None}, []),
])
def test_lora_limits_agree_with_each_other_and_the_flavours(changes, expected):
    assert messages(site_limits.lora_limits(site(**changes))) == expected


@pytest.mark.parametrize("changes,expected", [
    ({"kitchen_registry.catalogs[1].name": "cs-redhat-operator-index"},
     ["kitchen_operators.gpu.catalog: 'cs-certified-operator-index' is not a catalog in kitchen_registry.catalogs "
      "(did you mean 'cs-redhat-operator-index'?)",
      "kitchen_registry.catalogs[1].name: 'cs-redhat-operator-index' is a duplicate of kitchen_registry.catalogs[0].name"]),
    ({"kitchen_registry.mirrors[2].source": "quay.io/vllm"},
     ["kitchen_registry.mirrors[2].source: 'quay.io/vllm' is a duplicate of kitchen_registry.mirrors[0].source"]),
    ({"kitchen_tenants[1].name": "kitchen-platform"},
     ["kitchen_tenants[1].name: 'kitchen-platform' is a duplicate of kitchen_tenants[0].name"]),
    ({"kitchen_adapters[1].name": "helpdesk", "kitchen_adapters[1].versions": ["1.1.0"],
      "kitchen_adapters[1].serving_version": "1.1.0", "kitchen_bundle": None},
     ["kitchen_adapters[1].name: 'helpdesk' is a duplicate of kitchen_adapters[0].name"]),
    ({"kitchen_bundle": {"dir": "/b",
                         "images": [{"name": "vllm", "source": "docker://a/b:1", "repository": "a/b"},
                                    {"name": "vllm", "source": "docker://a/c:1", "repository": "a/c"}],
                         "adapters": [{"name": "helpdesk", "version": "1.0.0", "path": "/a"},
                                      {"name": "helpdesk", "version": "1.1.0", "path": "/b"},
                                      {"name": "helpdesk", "version": "1.0.0", "path": "/c"}],
                         "eval_sets": [{"name": "helpdesk", "path": "/e"}, {"name": "summarise", "path": "/s"},
                                       {"name": "helpdesk", "path": "/f"}]}},
     ["kitchen_bundle.adapters[2].name: 'helpdesk' '1.0.0' is a duplicate of kitchen_bundle.adapters[0]",
      "kitchen_bundle.eval_sets[2].name: 'helpdesk' is a duplicate of kitchen_bundle.eval_sets[0].name",
      "kitchen_bundle.images[1].name: 'vllm' is a duplicate of kitchen_bundle.images[0].name"]),
])
def test_every_named_list_has_unique_names(changes, expected):
    assert sorted(messages(site_rules.violations(site(**changes)))) == expected


@pytest.mark.parametrize("changes,expected", [
    ({"kitchen_bundle": {"dir": "/b", "eval_sets": [{"name": "helpdesk", "path": "/e"}]}},
     ["kitchen_adapters[1].eval_set: 'summarise' is not an eval set in kitchen_bundle.eval_sets (known: helpdesk)"]),
    ({"kitchen_bundle": {"dir": "/b"}},
     ["kitchen_adapters[0].eval_set: 'helpdesk' is not an eval set in kitchen_bundle.eval_sets (known: none)",
      "kitchen_adapters[1].eval_set: 'summarise' is not an eval set in kitchen_bundle.eval_sets (known: none)"]),
    ({}, []),  # no bundle in this inventory: the phase 3 gate checks the bundle it is given
])
def test_an_adapters_eval_set_is_carried_by_the_bundle(changes, expected):
    assert messages(site_rules.violations(site(**changes))) == expected


EXISTING = {"/inv/files/acme-root-ca.pem", "/src/eval/helpdesk", "/src/eval/helpdesk/helpdesk.jsonl",
            "/src/summarise.jsonl", "/src/model", "/certs/signing.pem"}
BUNDLE = {"dir": "/b", "eval_sets": [{"name": "helpdesk", "path": "/src/eval/helpdesk"},
                                     {"name": "summarise", "path": "/src/summarise.jsonl"}],
          "models": [{"name": "granite-3-8b-instruct", "path": "/src/model"}]}


@pytest.mark.parametrize("changes,connected,expected", [
    ({"kitchen_ca.bundle_file": "files/acme-root-ca.pem"}, False, []),  # relative to the inventory
    ({"kitchen_ca.bundle_file": "files/acme-ca.pem"}, False,
     ["kitchen_ca.bundle_file: 'files/acme-ca.pem' (/inv/files/acme-ca.pem) does not exist on the controller"]),
    ({"kitchen_ca.bundle_file": "/nowhere/ca.pem", "kitchen_ca.generate": True}, False, []),  # made by the run
    # The closed side reads no bundle source; the connected side reads them all.
    ({"kitchen_ca.bundle_file": "/inv/files/acme-root-ca.pem",
      "kitchen_bundle": dict(BUNDLE, models=[{"name": "granite-3-8b-instruct", "path": "/src/gone"}])}, False, []),
    ({"kitchen_ca.bundle_file": "/inv/files/acme-root-ca.pem",
      "kitchen_bundle": dict(BUNDLE, models=[{"name": "granite-3-8b-instruct", "path": "/src/gone"},
                                             {"name": "x", "path": "s3://models/x"}])}, True,
     ["kitchen_bundle.models[0].path: '/src/gone' does not exist on the connected side"]),
    ({"kitchen_ca.bundle_file": "/inv/files/acme-root-ca.pem", "kitchen_bundle": BUNDLE}, True, []),
    ({"kitchen_ca.bundle_file": "/inv/files/acme-root-ca.pem", "kitchen_bundle": BUNDLE,
      "kitchen_adapters[0].eval_set": "helpdesk/other.jsonl", "kitchen_adapters[1].eval_set": "summarise/x.jsonl"}, True,
     ["kitchen_adapters[0].eval_set: 'helpdesk/other.jsonl': eval set helpdesk (/src/eval/helpdesk) has no file other.jsonl",
      "kitchen_adapters[1].eval_set: 'summarise/x.jsonl': eval set summarise (/src/summarise.jsonl) has no file x.jsonl"]),
    ({"kitchen_ca.bundle_file": "/inv/files/acme-root-ca.pem",
      "kitchen_bundle": dict(BUNDLE, require_signature=True, signing_certificate="/certs/missing.pem")}, False,
     ["kitchen_bundle.signing_certificate: '/certs/missing.pem' does not exist on the controller"]),
])
def test_files_the_site_names_exist_where_the_run_reads_them(changes, connected, expected):
    found = site_files.missing_files(site(**changes), base_dir="/inv", connected=connected, exists=EXISTING.__contains__)
    assert messages(found) == expected


def test_relative_paths_start_at_the_inventory():
    assert site_files.resolve("files/ca.pem", "/inv") == "/inv/files/ca.pem"
    assert site_files.resolve("/etc/ca.pem", "/inv") == "/etc/ca.pem"
    assert site_files.resolve("../ca.pem", "/srv/inv") == "/srv/ca.pem"
    assert (ROOT / "inventories" / "openshift-sample" / "files" / "acme-root-ca.pem").is_file()


LOCAL = load_site("inventories/local")


@pytest.mark.parametrize("base,changes,expected", [
    (SAMPLE, {"kitchen_host": {"gpu": "none"}},
     ["kitchen_host: not supported on kitchen_platform openshift: only podman reads it (the single host)"]),
    (SAMPLE, {"kitchen_models[0].serving.chat_format": "gemma"},
     ["kitchen_models[0].serving.chat_format: not supported on kitchen_platform openshift: only podman reads it "
      "(llama.cpp on the single host; vLLM reads the model's chat template)"]),
    (LOCAL, {"kitchen_gpu": {"enabled": True}, "kitchen_models[0].serving.dtype": "float16",
             "kitchen_lora.pvc_size": "1Gi"},
     ["kitchen_gpu: not supported on kitchen_platform podman: only openshift reads it (the cluster's GPU nodes; a "
      "single host has kitchen_host.gpu)",
      "kitchen_lora.pvc_size: not supported on kitchen_platform podman: only openshift reads it (the adapter PVC)",
      "kitchen_models[0].serving.dtype: not supported on kitchen_platform podman: only openshift reads it (vLLM)"]),
    (LOCAL, {"kitchen_tenants[0].quota": {"gpus": 1}},
     ["kitchen_tenants[0].quota: not supported on kitchen_platform podman: only openshift reads it (the tenant's "
      "ResourceQuota)"]),
    (LOCAL, {}, []),
    (SAMPLE, {}, []),
])
def test_keys_of_the_other_platform_are_refused(base, changes, expected):
    assert messages(site_safety.other_platform(site(base, **changes))) == expected


MIXED = {"kitchen_gpu.mig_strategy": "mixed", "kitchen_gpu.mig_config": "all-1g.10gb"}


@pytest.mark.parametrize("changes,expected", [
    ({}, []),  # none: whole GPUs, as before
    ({"kitchen_gpu.mig_strategy": "single"}, []),  # single: slices are nvidia.com/gpu, no config asked
    (dict(MIXED, **{"kitchen_models[0].resources.mig_profile": "1g.10gb"}), []),
    ({"kitchen_gpu.mig_strategy": "mixed", "kitchen_gpu.node_mig_configs": {
        "gpu-node-1.acme.internal": "all-1g.10gb", "gpu-node-2.acme.internal": "all-disabled"}}, []),
    ({"kitchen_models[0].resources.mig_profile": "1g.10gb"},
     ["kitchen_models[0].resources.mig_profile: '1g.10gb' needs kitchen_gpu.mig_strategy mixed (it is 'none'; "
      "only mixed advertises nvidia.com/mig-<profile>)"]),
    ({"kitchen_gpu.mig_strategy": "single", "kitchen_models[0].resources.mig_profile": "1g.10gb"},
     ["kitchen_models[0].resources.mig_profile: '1g.10gb' needs kitchen_gpu.mig_strategy mixed (it is 'single'; "
      "only mixed advertises nvidia.com/mig-<profile>)"]),
    (dict(MIXED, **{"kitchen_models[0].resources.mig_profile": "1g.10gb", "kitchen_models[0].resources.gpus": 2}),
     ["kitchen_models[0].resources.gpus: 2 MIG slices of 1g.10gb: a CUDA process uses one MIG device "
      "(ask for a larger profile)"]),
    ({"kitchen_gpu.mig_strategy": "mixed"},
     ["kitchen_gpu.mig_config: required key is missing (kitchen_gpu.mig_strategy is mixed: the MIG manager "
      "partitions a node after its nvidia.com/mig.config label; no config for gpu-node-1.acme.internal, "
      "gpu-node-2.acme.internal)"]),
    ({"kitchen_gpu.mig_strategy": "mixed", "kitchen_gpu.node_mig_configs": {"gpu-node-1.acme.internal": "all-1g.10gb"}},
     ["kitchen_gpu.mig_config: required key is missing (kitchen_gpu.mig_strategy is mixed: the MIG manager "
      "partitions a node after its nvidia.com/mig.config label; no config for gpu-node-2.acme.internal)"]),
    ({"kitchen_gpu.mig_config": "all-1g.10gb"},
     ["kitchen_gpu.mig_config: needs kitchen_gpu.mig_strategy single or mixed (it is none: the GPU operator's "
      "MIG manager is disabled)"]),
    (dict(MIXED, **{"kitchen_gpu.node_mig_configs": {"gpu-node-3.acme.internal": "all-1g.10gb"}}),
     ["kitchen_gpu.node_mig_configs.gpu-node-3.acme.internal: is not a node of kitchen_gpu.nodes "
      "(did you mean 'gpu-node-2.acme.internal'?)"]),
])
def test_a_mig_slice_is_asked_for_only_where_the_nodes_are_partitioned_into_it(changes, expected):
    assert messages(site_rules.mig_rules(site(**changes))) == expected
