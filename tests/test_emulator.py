"""Apply delivery through kubernetes.core against the Kubernetes API emulator: check mode, and
the timeout messages a user sees when something never becomes ready."""

import json
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, run_playbook

pytestmark = pytest.mark.playbook
SAMPLE = "inventories/openshift-sample"


def site_vars(kubeconfig, timeout=60):
    return json.dumps({"kitchen_cluster": {"openshift_version": "4.18", "kubernetes_version": "1.31",
                                           "kubeconfig": str(kubeconfig), "wait_timeout": timeout},
                       "minio_create_buckets": False})


def get(url, path):
    with urllib.request.urlopen(url + path, timeout=10) as response:
        return json.loads(response.read())


def test_check_mode_against_an_empty_cluster_changes_nothing(emulator):
    # No bundle is built for the sample here (nor a registry and S3 to import it into).
    run = run_playbook(SAMPLE, "phase1.yml", str(ROOT / "playbooks" / "phase2.yml"), "--check", "--diff",
                       "--skip-tags", "bundle", "-e", site_vars(emulator["kubeconfig"]))
    assert run.rc == 0, run.output
    assert run.recap()["changed"] > 0  # it reports what it would create
    for tenant in ("kitchen-platform", "kitchen-finance", "kitchen-storage", "redhat-ods-operator"):
        with pytest.raises(urllib.error.HTTPError, match="404"):
            get(emulator["url"], "/api/v1/namespaces/%s" % tenant)
    assert get(emulator["url"], "/apis/serving.kserve.io/v1beta1/namespaces/kitchen-platform/inferenceservices")["items"] == []


@pytest.mark.parametrize("emulator", [{"never_ready": ["InferenceService/kitchen-platform/granite-3-8b-instruct"]}],
                         indirect=True)
def test_a_model_that_never_becomes_ready_is_named(emulator):
    started = time.monotonic()
    run = run_playbook(SAMPLE, "phase2.yml", "-e", site_vars(emulator["kubeconfig"], timeout=10))
    assert run.rc != 0
    assert ("kserve_vllm: not ready (waited 10 s at most): InferenceService/kitchen-platform/granite-3-8b-instruct "
            "(waiting for condition Ready=True; it reports no status conditions)") in run.text
    assert "TASK [smoke_test" not in run.output  # nothing is tasted before it is served
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("emulator", [{"nodes": {"gpu-node-1.acme.internal": 1, "gpu-node-2.acme.internal": 0}}],
                         indirect=True)
def test_a_gpu_node_without_gpus_is_named(emulator):
    run = run_playbook(SAMPLE, "phase1.yml", "--tags", "gpu_node_prep", "-e", site_vars(emulator["kubeconfig"], timeout=10))
    assert run.rc != 0
    assert ("GPU nodes without nvidia.com/gpu capacity after 10 s: gpu-node-2.acme.internal "
            "(nvidia.com/gpu.present=absent, feature.node.kubernetes.io/pci-10de.present=absent)") in run.text
    assert "gpu-node-1.acme.internal (" not in run.text


@pytest.mark.parametrize("emulator", [{"never_ready": ["Subscription/openshift-nfd/nfd"]}], indirect=True)
def test_an_operator_that_never_installs_shows_catalog_and_subscription(emulator):
    run = run_playbook(SAMPLE, "phase1.yml", "--tags", "gpu_node_prep", "-e", site_vars(emulator["kubeconfig"], timeout=10))
    assert run.rc != 0
    assert "nfd: nfd.4.18.0-202510211040 was not installed within 10 s" in run.text
    assert "CatalogSource openshift-marketplace/cs-redhat-operator-index: not found or no connection state." in run.text
    assert "Subscription openshift-nfd/nfd: no status." in run.text
    assert "InstallPlans: none." in run.text
    plans = get(emulator["url"], "/apis/operators.coreos.com/v1alpha1/namespaces/openshift-nfd/installplans")["items"]
    assert plans == []


MIG = json.dumps({"kitchen_gpu": {"enabled": True, "mig_strategy": "mixed", "mig_config": "all-1g.10gb",
                                  "node_mig_configs": {"gpu-node-2.acme.internal": "all-2g.20gb"},
                                  "nodes": ["gpu-node-1.acme.internal", "gpu-node-2.acme.internal"]}})


@pytest.mark.parametrize("emulator", [{"nodes": {"gpu-node-1.acme.internal": "mig-1g.10gb:7",
                                                 "gpu-node-2.acme.internal": "mig-2g.20gb:3"}}], indirect=True)
def test_mig_nodes_are_labelled_with_their_config_and_their_slices_counted(emulator):
    run = run_playbook(SAMPLE, "phase1.yml", "--tags", "gpu_node_prep", "-e", site_vars(emulator["kubeconfig"], timeout=10),
                       "-e", MIG)
    assert run.rc == 0, run.output
    labels = {n["metadata"]["name"]: n["metadata"]["labels"].get("nvidia.com/mig.config")
              for n in get(emulator["url"], "/api/v1/nodes")["items"]}
    assert labels == {"gpu-node-1.acme.internal": "all-1g.10gb", "gpu-node-2.acme.internal": "all-2g.20gb"}
    again = run_playbook(SAMPLE, "phase1.yml", "--tags", "gpu_node_prep", "-e", site_vars(emulator["kubeconfig"], timeout=10),
                         "-e", MIG)
    assert again.rc == 0 and again.recap()["changed"] == 0, again.output


@pytest.mark.parametrize("emulator", [{"nodes": {"gpu-node-1.acme.internal": "mig-1g.10gb:7",
                                                 "gpu-node-2.acme.internal": "mig-1g.10gb:7"}}], indirect=True)
def test_a_mig_profile_no_node_gives_is_named(emulator):
    models = json.loads(MIG)
    models["kitchen_gpu"].pop("node_mig_configs")
    run = run_playbook(SAMPLE, "phase1.yml", "--tags", "gpu_node_prep", "-e", site_vars(emulator["kubeconfig"], timeout=10),
                       "-e", json.dumps(models), "-e", json.dumps({"gpu_node_prep_models": [
                           {"name": "granite", "resources": {"mig_profile": "3g.40gb", "gpus": 1}}]}))
    assert run.rc != 0
    assert ("MIG slices short on the GPU nodes: nvidia.com/mig-3g.40gb: 1 requested (granite), 0 allocatable "
            "(no node has that profile)") in run.text, run.output[-2500:]
