"""What a real cluster would refuse or break, rendered from the sample site and checked as a
cluster administrator would read it: the Jobs that call a predictor do so over TLS with a
token only they hold and the RBAC the auth proxy checks; Jobs are named by what they do, so
new weights fill again and the immutable pod template is never changed in place; namespaces of
the platform come from the site."""

import json

import pytest

from conftest import ROOT, load_site, run_playbook

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_schemas import load_tree

pytestmark = pytest.mark.playbook
SAMPLE = "inventories/openshift-sample"


def render(out, *extra):
    run = run_playbook(SAMPLE, "phase1.yml", str(ROOT / "playbooks" / "phase2.yml"), "-e", "kitchen_delivery=render",
                       "-e", "kitchen_render_dir=%s" % out, *extra)
    assert run.rc == 0, run.output
    return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for _, d in load_tree(str(out))}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    return out, render(out)


def jobs(manifests, part):
    return [m for (kind, _, name), m in manifests.items() if kind == "Job" and part in name]


def test_the_taste_test_calls_the_auth_proxy_over_tls_with_a_token_only_it_holds(sample):
    _, manifests = sample
    (taste,) = jobs(manifests, "-taste-")
    pod = taste["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KITCHEN_URL"] == "https://granite-3-8b-instruct-predictor.kitchen-platform.svc.cluster.local:8443"
    # No token of the namespace's default account: a projected, short-lived one of its own account.
    assert pod["serviceAccountName"] == "kitchen-predictor-caller" and pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["predictor-auth"]
    sources = volumes["predictor-auth"]["projected"]["sources"]
    assert {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}} in sources
    assert env["KITCHEN_TOKEN_FILE"] == mount + "/token" and env["KITCHEN_CA_FILE"] == mount + "/service-ca.crt"
    assert any((s.get("configMap") or {}).get("name") == "openshift-service-ca.crt" for s in sources)


def test_the_callers_account_may_get_exactly_the_models_of_its_project_and_nothing_else(sample):
    _, manifests = sample
    account = manifests[("ServiceAccount", "kitchen-platform", "kitchen-predictor-caller")]
    assert account["automountServiceAccountToken"] is False
    served = sorted(m["name"] for m in load_site(SAMPLE)["kitchen_models"] if m["tenant"] == "kitchen-platform")
    roles = {key[2]: m for key, m in manifests.items() if key[0] == "Role" and key[1] == "kitchen-platform"
             and key[2].startswith("kitchen-predictor-caller")}
    assert sorted(roles) == ["kitchen-predictor-caller-%s" % name for name in served]
    for name in served:
        # What the auth proxy's SubjectAccessReview asks: get on the InferenceService by name.
        assert roles["kitchen-predictor-caller-" + name]["rules"] == [{
            "apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "resourceNames": [name],
            "verbs": ["get"]}]
        binding = manifests[("RoleBinding", "kitchen-platform", "kitchen-predictor-caller-" + name)]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "kitchen-predictor-caller-" + name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kitchen-predictor-caller",
                                        "namespace": "kitchen-platform"}]
    # No project without a served model gets the account.
    assert [key[1] for key in manifests if key[0] == "ServiceAccount" and key[2] == "kitchen-predictor-caller"] \
        == ["kitchen-platform"]


def test_new_weights_fill_again_under_a_new_name_and_the_old_job_leaves_the_tree(sample, tmp_path):
    out, manifests = sample
    (fill,) = jobs(manifests, "-fill-")
    models = load_site(SAMPLE)["kitchen_models"]
    repository, commit = models[0]["source"].rsplit("@", 1)
    models[0]["source"] = "%s@%s" % (repository, commit[::-1])  # another pinned revision
    again = render(out, "-e", json.dumps({"kitchen_models": models}))
    (refill,) = jobs(again, "-fill-")
    assert refill["metadata"]["name"] != fill["metadata"]["name"]
    assert refill["metadata"]["labels"]["privateai.kitchen/job"] == fill["metadata"]["labels"]["privateai.kitchen/job"]
    # The render that follows holds only the new Job: the GitOps tool prunes the old one.
    assert (out / "phase2" / "kserve_vllm" / ("job_kitchen-platform_%s.yaml" % refill["metadata"]["name"])).exists()
    assert not (out / "phase2" / "kserve_vllm" / ("job_kitchen-platform_%s.yaml" % fill["metadata"]["name"])).exists()
    # Serving the same weights again keeps the Job's name (nothing runs again).
    assert jobs(render(out), "-fill-")[0]["metadata"]["name"] == fill["metadata"]["name"]


def test_tenants_admit_the_applications_namespace_the_site_names(sample, tmp_path):
    _, manifests = sample
    assert ("NetworkPolicy", "kitchen-finance", "kitchen-allow-from-redhat-ods-applications") in manifests
    site = load_site(SAMPLE)["kitchen_openshift_ai"]
    other = render(tmp_path / "odh", "-e", json.dumps({"kitchen_openshift_ai": dict(site, applications_namespace="opendatahub")}))
    policies = [key for key in other if key[0] == "NetworkPolicy" and "allow-from" in key[2]]
    assert ("NetworkPolicy", "kitchen-finance", "kitchen-allow-from-opendatahub") in policies
    assert not [key for key in policies if "redhat-ods-applications" in key[2]]
    assert other[("DSCInitialization", None, "default-dsci")]["spec"]["applicationsNamespace"] == "opendatahub"
