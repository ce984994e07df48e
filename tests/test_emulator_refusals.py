"""The API emulator refuses what a real API server refuses, with its status codes and Status
bodies: a change of an immutable field, a custom resource its CRD's schema rejects, and a
server-side apply of a field another field manager owns. Driven through kubernetes.core (the
path the roles take) and, where the verb is not one kubernetes.core sends, the kubernetes
Python client."""

import json
import urllib.error
import urllib.request

import kubernetes
import pytest
from kubernetes.dynamic import DynamicClient

from conftest import ROOT, run_playbook

pytestmark = pytest.mark.playbook
SAMPLE = "inventories/openshift-sample"
APPLY = str(ROOT / "tests" / "playbooks" / "k8s_apply.yml")
NS = "kitchen-platform"


def apply(emulator, definitions, *args, manager="private-ai-kitchen", force=False):
    variables = {"kubeconfig": str(emulator["kubeconfig"]), "definitions": definitions,
                 "field_manager": manager, "force": force}
    return run_playbook(SAMPLE, APPLY, "-e", json.dumps(variables), *args)


def read(emulator, path):
    with urllib.request.urlopen(emulator["url"] + path, timeout=10) as response:
        return json.loads(response.read())


def client(emulator):
    return DynamicClient(kubernetes.config.new_client_from_config(str(emulator["kubeconfig"])))


def refusal(call):
    """The status code and Status body of a refused request."""
    with pytest.raises(kubernetes.client.exceptions.ApiException) as caught:
        call()
    return caught.value.status, json.loads(caught.value.body)


def job(image):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "taste", "namespace": NS},
            "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "taste", "image": image, "command": ["python3", "/opt/taste.py"]}]}}}}


def test_a_job_whose_template_changes_is_refused(emulator):
    assert apply(emulator, [job("registry.acme.internal/taste@sha256:" + "1" * 64)]).rc == 0
    changed = job("registry.acme.internal/taste@sha256:" + "2" * 64)
    for mode in ((), ("--check",)):  # a dry run is refused alike: check mode shows the failure
        run = apply(emulator, [changed], *mode)
        assert run.rc != 0
        assert '"code": 422' in run.text and '"reason": "Invalid"' in run.text
        assert 'Job.batch \\"taste\\" is invalid: spec.template: Invalid value: ' in run.text
        assert "field is immutable" in run.text
    stored = read(emulator, "/apis/batch/v1/namespaces/%s/jobs/taste" % NS)
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1" * 64)
    # Fields outside the immutable ones still change.
    again = job("registry.acme.internal/taste@sha256:" + "1" * 64)
    again["metadata"]["labels"] = {"app.kubernetes.io/part-of": "kitchen"}
    assert apply(emulator, [again]).rc == 0


def isvc(predictor):
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "granite", "namespace": NS},
            "spec": {"predictor": dict({"model": {"modelFormat": {"name": "vLLM"}, "runtime": "vllm"}}, **predictor)}}


def runtime(spec):
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
            "metadata": {"name": "vllm", "namespace": NS},
            "spec": dict({"containers": [{"name": "kserve-container", "image": "vllm@sha256:" + "3" * 64}]}, **spec)}


@pytest.mark.parametrize("definition, message", [
    (isvc({"minReplicas": "two"}), 'InferenceService.serving.kserve.io \\"granite\\" is invalid: '
     'spec.predictor.minReplicas: Invalid value: \\"string\\": spec.predictor.minReplicas in body must be of type '
     'integer: \\"string\\"'),
    (runtime({"supportedModelFormats": "vLLM"}), 'ServingRuntime.serving.kserve.io \\"vllm\\" is invalid: '
     'spec.supportedModelFormats: Invalid value: \\"string\\": spec.supportedModelFormats in body must be of type '
     'array: \\"string\\"'),
], ids=["InferenceService", "ServingRuntime"])
def test_a_custom_resource_its_schema_rejects_is_refused(emulator, definition, message):
    run = apply(emulator, [definition])
    assert run.rc != 0
    assert '"code": 422' in run.text and message in run.text
    kind = definition["kind"].lower() + "s"
    with pytest.raises(urllib.error.HTTPError, match="404"):
        read(emulator, "/apis/%s/namespaces/%s/%s/%s" % (definition["apiVersion"], NS, kind,
                                                            definition["metadata"]["name"]))


def test_every_write_of_a_custom_resource_is_validated_and_unknown_fields_are_pruned(emulator):
    api = client(emulator).resources.get(api_version="serving.kserve.io/v1beta1", kind="InferenceService")
    good = isvc({"minReplicas": 1, "notAField": True})
    created = api.create(body=good, namespace=NS)  # no fieldValidation: Warn, the field is dropped
    assert "notAField" not in created.to_dict()["spec"]["predictor"]
    bad = isvc({"minReplicas": [1]})
    bad["metadata"]["resourceVersion"] = created.metadata.resourceVersion
    writes = {"replace": lambda: api.replace(body=bad, namespace=NS),
              "merge patch": lambda: api.patch(body=bad, name="granite", namespace=NS,
                                               content_type="application/merge-patch+json"),
              # forced: the field is the creator's ("OpenAPI-Generator", the client's User-Agent)
              "apply, dry run": lambda: api.server_side_apply(body=bad, name="granite", namespace=NS, dry_run="All",
                                                              field_manager="kitchen", force_conflicts=True)}
    for name, write in writes.items():
        code, status = refusal(write)
        assert (code, status["reason"], status["details"]["causes"][0]["field"]) == \
            (422, "Invalid", "spec.predictor.minReplicas"), name
    # kubectl's default, fieldValidation=Strict (which neither kubernetes.core nor the dynamic
    # client sends), refuses an unknown field instead.
    strict = urllib.request.Request(
        emulator["url"] + "/apis/serving.kserve.io/v1beta1/namespaces/%s/inferenceservices?fieldValidation=Strict" % NS,
        data=json.dumps(dict(good, metadata={"name": "other", "namespace": NS})).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(strict, timeout=10)
    code, status = caught.value.code, json.loads(caught.value.read())
    assert (code, status["reason"]) == (400, "BadRequest")
    assert 'unknown field "spec.predictor.notAField"' in status["message"]
    assert api.get(name="granite", namespace=NS).spec.predictor.minReplicas == 1


def config_map(data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kitchen-flavours", "namespace": NS},
            "data": data}


def test_an_apply_of_a_field_another_manager_owns_is_a_conflict_until_forced(emulator):
    assert apply(emulator, [config_map({"serving": "helpdesk"})], manager="team-a").rc == 0
    assert apply(emulator, [config_map({"serving": "helpdesk"})], manager="team-b").rc == 0  # same value: shared
    run = apply(emulator, [config_map({"serving": "summarise"})], manager="team-b")
    assert run.rc != 0
    assert '"code": 409' in run.text and '"reason": "Conflict"' in run.text
    assert 'Apply failed with 1 conflict: conflict with \\"team-a\\": .data.serving' in run.text
    path = "/api/v1/namespaces/%s/configmaps/kitchen-flavours" % NS
    assert read(emulator, path)["data"] == {"serving": "helpdesk"}
    assert apply(emulator, [config_map({"serving": "summarise"})], manager="team-b", force=True).rc == 0
    assert read(emulator, path)["data"] == {"serving": "summarise"}
    # The field is team-b's now: team-a is refused, team-b changes it again freely.
    run = apply(emulator, [config_map({"serving": "helpdesk"})], manager="team-a")
    assert run.rc != 0 and 'conflict with \\"team-b\\": .data.serving' in run.text
    assert apply(emulator, [config_map({"serving": "both"})], manager="team-b").rc == 0


def test_a_field_a_manager_no_longer_applies_is_removed_unless_another_owns_it(emulator):
    path = "/api/v1/namespaces/%s/configmaps/kitchen-flavours" % NS
    assert apply(emulator, [config_map({"a": "1", "b": "2", "c": "3"})], manager="team-a").rc == 0
    assert apply(emulator, [config_map({"c": "3"})], manager="team-b").rc == 0
    assert apply(emulator, [config_map({"a": "1"})], manager="team-a").rc == 0
    assert read(emulator, path)["data"] == {"a": "1", "c": "3"}


def test_immutable_fields_of_claims_and_deployments(emulator):
    resources = client(emulator).resources
    claims = resources.get(api_version="v1", kind="PersistentVolumeClaim")
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models", "namespace": NS},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Gi"}}}}

    def apply_claim(spec):
        return claims.server_side_apply(body=dict(claim, spec=dict(claim["spec"], **spec)), name="models",
                                        namespace=NS, field_manager="kitchen")

    apply_claim({})
    assert apply_claim({"resources": {"requests": {"storage": "0.2Ti"}}}).spec.resources.requests["storage"] == "0.2Ti"
    code, status = refusal(lambda: apply_claim({"resources": {"requests": {"storage": "150Gi"}}}))
    assert (code, status["message"]) == (422, 'PersistentVolumeClaim "models" is invalid: spec.resources.requests.'
                                              'storage: Forbidden: field can not be less than previous value')
    code, status = refusal(lambda: apply_claim({"accessModes": ["ReadWriteMany"],
                                                "resources": {"requests": {"storage": "0.2Ti"}}}))
    assert (code, status["details"]["causes"]) == (422, [{
        "reason": "FieldValueForbidden", "field": "spec", "message": "Forbidden: spec is immutable after creation "
        "except resources.requests and volumeAttributesClassName for bound claims"}])

    deployments = resources.get(api_version="apps/v1", kind="Deployment")
    labels = {"app.kubernetes.io/name": "minio"}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "minio", "namespace": NS},
                  "spec": {"selector": {"matchLabels": labels}, "template": {
                      "metadata": {"labels": labels}, "spec": {"containers": [{"name": "minio", "image": "m"}]}}}}
    deployments.create(body=deployment, namespace=NS)
    deployment["spec"]["selector"] = {"matchLabels": dict(labels, tier="storage")}
    code, status = refusal(lambda: deployments.patch(body=deployment, name="minio", namespace=NS,
                                                     content_type="application/merge-patch+json"))
    assert code == 422 and status["message"].startswith('Deployment.apps "minio" is invalid: spec.selector: Invalid value: ')
    assert status["message"].endswith(": field is immutable")
    code, status = refusal(lambda: deployments.patch(body={"metadata": {"name": "other"}}, name="minio", namespace=NS,
                                                     content_type="application/merge-patch+json"))
    assert (code, status["message"]) == (400, "the name of the object (other) does not match the name on the URL (minio)")
