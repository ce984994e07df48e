"""Item 4 of issue 14: a GitOps render approves the pinned CSV's InstallPlan without the
playbook. The rule as a table, the rendered Job and its least-privilege RBAC strictly valid,
and the approver script itself run against the Kubernetes API emulator."""

import json
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, crd_dir, run_playbook, emulator_call as call

from ansible_collections.privateai.kitchen.plugins.module_utils import olm_installplans
from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_schemas import (
    CrdCatalog,
    load_tree,
    validate_tree,
)
from ansible_collections.privateai.kitchen.plugins.module_utils.olm_installplans import installplan_verdict

SAMPLE = "inventories/openshift-sample"
APPROVER = "kitchen-installplan-approver"
PIN = "nfd.4.18.0-202510211040"
OLM = "/apis/operators.coreos.com/v1alpha1/namespaces/%s/"


def plan(name, *csvs, approved=False, owner=None):
    meta = {"name": name}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "operators.coreos.com/v1alpha1", "kind": "Subscription",
                                    "name": owner, "uid": "u-" + owner}]
    return {"metadata": meta, "spec": {"clusterServiceVersionNames": list(csvs), "approved": approved}}


@pytest.mark.parametrize("plans, approve, approved, refused", [
    ([], [], [], []),
    ([plan("p1", PIN)], ["p1"], [], []),
    ([plan("p1", PIN, approved=True)], [], ["p1"], []),
    # An upgrade beyond the pin is refused, and named with its CSV.
    ([plan("p1", PIN, approved=True), plan("p2", "nfd.4.19.0")], [], ["p1"], ["p2 (nfd.4.19.0)"]),
    # The pin plus anything unpinned is not exactly the pin.
    ([plan("p1", PIN, "other.v1")], [], [], ["p1 (nfd.4.18.0-202510211040, other.v1)"]),
    # Approved already (by someone else): not ours to refuse any more.
    ([plan("p1", "nfd.4.19.0", approved=True)], [], [], []),
    # Owned by another Subscription of the namespace: not this operator's plan.
    ([plan("p1", "other.v1", owner="other")], [], [], []),
    ([plan("p1", PIN, owner="nfd"), plan("p2", "other.v1", owner="other")], ["p1"], [], []),
    ([plan("p1")], [], [], ["p1 (no CSV)"]),  # a plan naming nothing is not the pin either
])
def test_only_exactly_the_pinned_csv_is_approved(plans, approve, approved, refused):
    verdict = installplan_verdict(plans, PIN, "nfd")
    assert (verdict["approve"], verdict["approved"], verdict["refused"]) == (approve, approved, refused)
    assert verdict["pinned"] == sorted(approve + approved)


def render(out, delivery="render"):
    return run_playbook(SAMPLE, "phase1.yml", "--tags", "registry_mirror,gpu_node_prep,openshift_ai",
                        "-e", "kitchen_delivery=%s" % delivery, "-e", "kitchen_render_dir=%s" % out)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("olm")
    run = render(out)
    assert run.rc == 0, run.output
    return out, run


@pytest.mark.playbook
def test_the_approver_is_rendered_beside_each_subscription_and_strictly_valid(rendered):
    out, _ = rendered
    count, errors = validate_tree(str(out), "1.31", CrdCatalog(str(crd_dir())))
    assert count > 0 and [str(e) for e in errors] == []
    cli = subprocess.run([sys.executable, str(ROOT / "tools" / "validate-manifests"), str(out),
                          "--kubernetes-version", "1.31"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    for package, namespace in (("nfd", "openshift-nfd"), ("gpu-operator-certified", "nvidia-gpu-operator"),
                               ("rhods-operator", "redhat-ods-operator")):
        folder = out / "phase1" / ("operator-" + package)
        docs = [doc for _, doc in load_tree(str(folder))]
        kinds = sorted(d["kind"] for d in docs)
        assert kinds == ["ConfigMap", "Job", "Namespace", "OperatorGroup", "Role", "RoleBinding", "ServiceAccount",
                         "Subscription"]
        (subscription,) = [d for d in docs if d["kind"] == "Subscription"]
        (job,) = [d for d in docs if d["kind"] == "Job"]
        # Named by content; in the Subscription's sync wave (neither carries one: wave 0).
        assert job["metadata"]["name"].startswith("approve-%s-" % package)
        assert job["metadata"]["labels"]["privateai.kitchen/job"] == "approve-" + package
        assert "annotations" not in job["metadata"] and "annotations" not in subscription["metadata"]
        pod = job["spec"]["template"]["spec"]
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        assert env["KITCHEN_STARTING_CSV"] == subscription["spec"]["startingCSV"]
        assert env["KITCHEN_SUBSCRIPTION"] == subscription["metadata"]["name"] == package
        assert env["KITCHEN_API_URL"].startswith("https://")
        assert pod["serviceAccountName"] == APPROVER and pod["automountServiceAccountToken"] is False
        assert "@sha256:" in pod["containers"][0]["image"]
        (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
        assert config["data"]["approve_installplan.py"] == (ROOT / olm_installplans.__file__).read_text()


@pytest.mark.playbook
def test_the_approver_rbac_is_least_privilege(rendered):
    out, _ = rendered
    folder = out / "phase1" / "operator-nfd"
    role = yaml.safe_load((folder / ("role_openshift-nfd_%s.yaml" % APPROVER)).read_text())
    assert role["rules"] == [
        {"apiGroups": ["operators.coreos.com"], "resources": ["installplans"], "verbs": ["list", "patch"]},
        {"apiGroups": ["operators.coreos.com"], "resources": ["subscriptions"], "resourceNames": ["nfd"],
         "verbs": ["get"]}]
    binding = yaml.safe_load((folder / ("rolebinding_openshift-nfd_%s.yaml" % APPROVER)).read_text())
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": APPROVER}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": APPROVER, "namespace": "openshift-nfd"}]
    account = yaml.safe_load((folder / ("serviceaccount_openshift-nfd_%s.yaml" % APPROVER)).read_text())
    assert account["automountServiceAccountToken"] is False
    # No cluster-wide grant anywhere in the operator folders.
    assert not list(out.glob("phase1/operator-*/cluster*"))


@pytest.mark.playbook
def test_a_second_render_changes_nothing(rendered):
    out, _ = rendered
    again = render(out)
    assert again.rc == 0, again.output
    assert again.recap()["changed"] == 0


# ---- the approver script against the API emulator ----------------------------------------

@pytest.fixture
def api(emulator):
    return emulator["url"]




def subscribe(url, namespace, csv=PIN):
    call(url, "POST", OLM % namespace + "subscriptions", {
        "apiVersion": "operators.coreos.com/v1alpha1", "kind": "Subscription",
        "metadata": {"name": "nfd", "namespace": namespace},
        "spec": {"name": "nfd", "channel": "stable", "source": "cs-redhat-operator-index",
                 "sourceNamespace": "openshift-marketplace", "startingCSV": csv, "installPlanApproval": "Manual"}})
    deadline = time.monotonic() + 10
    while "install-nfd" not in approved(url, namespace):  # the emulated OLM makes its plan
        assert time.monotonic() < deadline, "the emulator made no InstallPlan for the Subscription"
        time.sleep(0.2)


def add_plan(url, namespace, name, *csvs, owner=None):
    body = dict(plan(name, *csvs, owner=owner), apiVersion="operators.coreos.com/v1alpha1", kind="InstallPlan")
    body["metadata"]["namespace"] = namespace
    body["spec"]["approval"] = "Manual"
    call(url, "POST", OLM % namespace + "installplans", body)


def approved(url, namespace):
    return {p["metadata"]["name"]: p["spec"]["approved"]
            for p in call(url, "GET", OLM % namespace + "installplans")["items"]}


def approve(url, namespace, timeout=20, **extra):
    env = {"PATH": "/usr/bin:/bin", "KITCHEN_API_URL": url, "KITCHEN_NAMESPACE": namespace,
           "KITCHEN_SUBSCRIPTION": "nfd", "KITCHEN_STARTING_CSV": PIN, "KITCHEN_TIMEOUT": str(timeout),
           "KITCHEN_INTERVAL": "0.2", **extra}
    proc = subprocess.run([sys.executable, olm_installplans.__file__], env=env, capture_output=True, text=True,
                          timeout=120)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.playbook
def test_the_approver_approves_the_pinned_plan_once(api):
    subscribe(api, "op-a")
    rc, result = approve(api, "op-a")
    assert rc == 0, result
    assert result["ok"] is True and result["approved"] == ["install-nfd"]
    assert approved(api, "op-a") == {"install-nfd": True}
    rc, result = approve(api, "op-a")  # the next sync: nothing left to do
    assert rc == 0 and result["approved"] == [] and result["already_approved"] == ["install-nfd"]


@pytest.mark.playbook
def test_a_plan_of_another_csv_stays_unapproved_and_is_named(api):
    subscribe(api, "op-b")
    add_plan(api, "op-b", "install-upgrade", "nfd.4.19.0-202601010000")
    add_plan(api, "op-b", "install-someone-else", "other.v2", owner="other")
    rc, result = approve(api, "op-b")
    assert rc == 1
    assert result["ok"] is False and result["approved"] == ["install-nfd"]
    assert result["error"] == ("InstallPlan not approved, it names another CSV than the pinned %s: "
                               "install-upgrade (nfd.4.19.0-202601010000)" % PIN)
    assert approved(api, "op-b") == {"install-nfd": True, "install-upgrade": False, "install-someone-else": False}


@pytest.mark.playbook
def test_a_plan_that_is_not_the_pin_approves_nothing(api):
    add_plan(api, "op-c", "install-nfd", PIN, "unpinned-dependency.v1")  # before OLM would make its own
    subscribe(api, "op-c")
    rc, result = approve(api, "op-c")
    assert rc == 1 and result["approved"] == []
    assert "install-nfd (%s, unpinned-dependency.v1)" % PIN in result["error"]
    assert approved(api, "op-c") == {"install-nfd": False}


@pytest.mark.playbook
def test_a_subscription_pinned_elsewhere_or_missing_approves_nothing(api):
    subscribe(api, "op-d", csv="nfd.4.17.0")
    rc, result = approve(api, "op-d")
    assert rc == 1 and "Subscription op-d/nfd pins nfd.4.17.0, this approver %s" % PIN in result["error"]
    assert approved(api, "op-d") == {"install-nfd": False}
    rc, result = approve(api, "op-e", timeout=1)
    assert rc == 1 and result["error"] == "nothing approved within 1 s: Subscription op-e/nfd: HTTP 404"


def test_the_token_never_goes_over_plain_http(tmp_path):
    token = tmp_path / "token"
    token.write_text("secret-token")
    rc, result = approve("http://127.0.0.1:9", "op-f", timeout=1, KITCHEN_TOKEN_FILE=str(token))
    assert rc == 2 and "plain HTTP" in result["error"]
    assert "secret-token" not in json.dumps(result)


@pytest.mark.playbook
def test_apply_mode_approves_from_the_playbook_and_renders_no_approver(api, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    extra = json.dumps({"kitchen_cluster": {"openshift_version": "4.18", "kubernetes_version": "1.31",
                                            "kubeconfig": str(kubeconfig), "wait_timeout": 30}})
    run = run_playbook(SAMPLE, "phase1.yml", "--tags", "gpu_node_prep", "-e", extra)
    assert run.rc == 0, run.output
    assert approved(api, "openshift-nfd") == {"install-nfd": True}
    assert call(api, "GET", "/apis/batch/v1/namespaces/openshift-nfd/jobs")["items"] == []
