"""Filters of roles/openshift/manifest_delivery: naming, deterministic YAML, readiness."""

import pytest
import yaml

from ansible_collections.privateai.kitchen.plugins.module_utils import manifest_render as km

NAMESPACED = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "kitchen-quota", "namespace": "team-a"}}
CLUSTER = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}


def test_file_names_are_unambiguous():
    assert km.manifest_filename(NAMESPACED) == "resourcequota_team-a_kitchen-quota.yaml"
    assert km.manifest_filename(CLUSTER) == "namespace_team-a.yaml"
    assert km.manifest_id(NAMESPACED) == "ResourceQuota/team-a/kitchen-quota"
    assert km.manifest_id(CLUSTER) == "Namespace/team-a"


def test_yaml_is_deterministic_and_keeps_key_order():
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ca", "namespace": "n"},
                "data": {"z": "1", "a": "2"}}
    first = km.manifest_yaml(manifest)
    assert first == km.manifest_yaml(dict(manifest))
    assert first.startswith("---\napiVersion: v1\nkind: ConfigMap\n")
    assert first.index("\n  z:") < first.index("\n  a:")  # order as rendered, not sorted
    assert yaml.safe_load(first) == manifest


def test_multiline_strings_become_literal_blocks():
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    text = km.manifest_yaml({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ca"}, "data": {"ca.crt": pem}})
    assert "ca.crt: |\n    -----BEGIN CERTIFICATE-----\n" in text
    assert yaml.safe_load(text)["data"]["ca.crt"] == pem


def test_string_subclasses_are_dumped_as_plain_strings():
    class Tagged(str):
        pass
    text = km.manifest_yaml({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": Tagged("x")}})
    assert "name: x\n" in text and "!!" not in text


def test_kustomization_lists_resources_in_order():
    assert yaml.safe_load(km.kustomization_yaml(["b.yaml", "a.yaml"])) == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["b.yaml", "a.yaml"]}


def test_manifest_problems():
    assert km.manifest_problems([CLUSTER, NAMESPACED]) == []
    assert km.manifest_problems([CLUSTER, CLUSTER]) == ["manifest 1 (Namespace/team-a) is a duplicate of manifest 0"]
    assert km.manifest_problems([{"kind": "Namespace", "metadata": {}}]) == [
        "manifest 0 (Namespace/?) lacks apiVersion, metadata.name"]
    assert km.manifest_problems("nope") == ["manifests must be a list, got str"]


CSV_WAIT = {"field": "status.phase", "value": "Succeeded"}
READY_WAIT = {"condition": {"type": "Ready", "status": "True"}}


@pytest.mark.parametrize("resources,wait,ready", [
    ([], READY_WAIT, False),
    ([{"status": {"conditions": [{"type": "Ready", "status": "True"}]}}], READY_WAIT, True),
    ([{"status": {"conditions": [{"type": "Ready", "status": "False"}]}}], READY_WAIT, False),
    ([{"status": {}}], READY_WAIT, False),
    ([{"status": {"phase": "Succeeded"}}], CSV_WAIT, True),
    ([{"status": {"phase": "Installing"}}], CSV_WAIT, False),
    ([{}], CSV_WAIT, False),
])
def test_resource_ready(resources, wait, ready):
    assert km.resource_ready(resources, wait) is ready


def test_a_failed_job_ends_the_wait_and_is_reported_with_its_reason():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fill", "namespace": "n"}}
    wait = km.wait_for(job, condition="Complete")
    failed = [{"status": {"conditions": [{"type": "Failed", "status": "True",
                                          "message": "Job has reached the specified backoff limit"}]}}]
    running = [{"status": {"active": 1}}]
    assert km.resource_settled(failed, wait) and not km.resource_ready(failed, wait)
    assert not km.resource_settled(running, wait)
    assert km.unready_report([{"item": wait, "resources": failed}]) == [
        "Job/n/fill (waiting for condition Complete=True; conditions: Failed=True "
        "(Job has reached the specified backoff limit))"]
    # Only a Job's Complete has a failure to look for.
    assert not km.resource_settled(failed, km.wait_for(dict(job, kind="Deployment"), condition="Complete"))


def test_resource_state_explains_what_is_missing():
    assert km.resource_state([], READY_WAIT) == "it does not exist"
    assert km.resource_state([{"status": {}}], READY_WAIT) == "it reports no status conditions"
    assert km.resource_state(
        [{"status": {"conditions": [{"type": "Ready", "status": "False", "message": "ImagePullBackOff"}]}}], READY_WAIT
    ) == "conditions: Ready=False (ImagePullBackOff)"
    assert km.resource_state([{"status": {"phase": "Installing"}}], CSV_WAIT) == "status.phase is 'Installing'"


def test_standard_labels_are_added_without_overriding():
    labelled = km.with_labels([NAMESPACED, {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": "x", "labels": {"app.kubernetes.io/part-of": "mine"}}}],
                              {"app.kubernetes.io/part-of": "private-ai-kitchen", "app.kubernetes.io/instance": "s"})
    assert labelled[0]["metadata"]["labels"] == {"app.kubernetes.io/part-of": "private-ai-kitchen",
                                                 "app.kubernetes.io/instance": "s"}
    assert labelled[1]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mine"
    assert "labels" not in NAMESPACED["metadata"]  # the input is not modified


def test_status_summary():
    assert km.status_summary({}) == "no status"
    assert km.status_summary({"state": "UpgradePending", "currentCSV": "rhods-operator.2.22.1", "conditions": [
        {"type": "CatalogSourcesUnhealthy", "status": "True", "message": "cs-redhat-operator-index unhealthy"}]}) == (
        "state=UpgradePending; currentCSV=rhods-operator.2.22.1; "
        "CatalogSourcesUnhealthy=True (cs-redhat-operator-index unhealthy)")


def test_wait_for_builds_delivery_waits():
    assert km.wait_for(NAMESPACED, condition="Ready") == {
        "api_version": "v1", "kind": "ResourceQuota", "name": "kitchen-quota", "namespace": "team-a",
        "condition": {"type": "Ready", "status": "True"}}
    assert km.wait_for(CLUSTER, field="status.phase", expected="Active") == {
        "api_version": "v1", "kind": "Namespace", "name": "team-a", "field": "status.phase", "value": "Active"}


def test_gpu_node_report_names_each_node_without_gpus():
    gpu = {"metadata": {"labels": {}}, "status": {"capacity": {"cpu": "64", "nvidia.com/gpu": "2"}}}
    nogpu = {"metadata": {"labels": {"feature.node.kubernetes.io/pci-10de.present": "true"}},
             "status": {"capacity": {"cpu": "64"}}}
    assert km.gpu_capacity([gpu]) == 2 and km.gpu_capacity([nogpu]) == 0 and km.gpu_capacity([]) == 0
    assert km.gpu_node_report([
        {"item": "gpu-1", "resources": [gpu]},
        {"item": "gpu-2", "resources": [nogpu]},
        {"item": "gpu-3", "resources": []},
    ]) == ["gpu-2 (nvidia.com/gpu.present=absent, feature.node.kubernetes.io/pci-10de.present=true)",
           "gpu-3 (no such node)"]


def with_wave(manifest, wave):
    manifest = dict(manifest, metadata=dict(manifest["metadata"], annotations={km.SYNC_WAVE: str(wave)}))
    return manifest


def test_sync_waves_order_the_apply():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fill", "namespace": "team-a"}}
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "granite", "namespace": "team-a"}}
    waves = km.sync_waves([with_wave(isvc, 1), with_wave(job, -1), NAMESPACED])
    assert [(w["wave"], [m["kind"] for m in w["manifests"]]) for w in waves] == [
        (-1, ["Job"]), (0, ["ResourceQuota"]), (1, ["InferenceService"])]
    waits = [km.wait_for(job, condition="Complete"), km.wait_for(isvc, condition="Ready")]
    assert km.waits_in(waits, waves[0]["manifests"]) == [waits[0]]
    assert km.waits_in(waits, waves[1]["manifests"]) == []
    with pytest.raises(ValueError, match="sync-wave must be an integer"):
        km.sync_waves([with_wave(job, "soon")])


def test_unready_report_names_each_object_and_its_state():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fill", "namespace": "team-a"}}
    results = [
        {"item": km.wait_for(job, condition="Complete"),
         "resources": [{"status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}}]},
        {"item": km.wait_for(CLUSTER, field="status.phase", expected="Active"), "resources": [{"status": {"phase": "Active"}}]},
        {"item": km.wait_for(NAMESPACED, condition="Ready"), "resources": []},
    ]
    assert km.unready_report(results) == [
        "Job/team-a/fill (waiting for condition Complete=True; conditions: Failed=True (BackoffLimitExceeded))",
        "ResourceQuota/team-a/kitchen-quota (waiting for condition Ready=True; it does not exist)"]
