"""Issue acceptance for the OpenShift roles, proven without a cluster: phases 1 and 2 of the
sample site render every object the roadmap needs, strictly valid, with every reference
resolved, every image by digest, and no secret in the output of the run."""

from collections import Counter

import pytest
import yaml

from conftest import ROOT, crd_dir, load_site, run_playbook, tree_digest

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_refs import (
    declared_preexisting,
    dangling,
)
from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_schemas import (
    CrdCatalog,
    load_tree,
    validate_tree,
)

pytestmark = pytest.mark.playbook
SAMPLE = "inventories/openshift-sample"


def render_site(out, *args):
    # Phases 1 and 2 (phase 3 needs a built bundle: tests/test_openshift_flavours.py).
    return run_playbook(SAMPLE, "phase1.yml", str(ROOT / "playbooks" / "phase2.yml"), "-e", "kitchen_delivery=render", "-e", "kitchen_render_dir=%s" % out, *args)


@pytest.fixture(scope="module")
def site_render(tmp_path_factory):
    """The GitOps tree, the run, and every object rendered: the tree's and the Secrets apart."""
    out = tmp_path_factory.mktemp("site") / "tree"
    run = render_site(out)
    assert run.rc == 0, run.output
    return out, run, [doc for _, doc in load_tree(str(out)) + load_tree(str(out) + ".secrets")]


def test_every_roadmap_object_is_rendered(site_render):
    _, _, manifests = site_render
    kinds = Counter(m["kind"] for m in manifests)
    for kind in ["ImageDigestMirrorSet", "OperatorHub", "CatalogSource", "Image", "Proxy", "Namespace", "Deployment",
                 "PersistentVolumeClaim", "Service", "Route", "Secret", "NodeFeatureDiscovery", "ClusterPolicy",
                 "Subscription", "OperatorGroup", "MachineConfig", "DSCInitialization", "DataScienceCluster",
                 "Job", "ServingRuntime", "InferenceService", "ResourceQuota", "LimitRange", "NetworkPolicy",
                 "RoleBinding", "ConfigMap"]:
        assert kinds[kind] > 0, kind
    names = {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]) for m in manifests}
    assert ("ConfigMap", "openshift-config", "acme-root-ca") in names  # Proxy trustedCA
    assert ("Secret", "kitchen-finance", "aws-connection-kitchen-s3") in names  # data connection
    # Jobs are named by what they do: <stem>-<digest of the spec and its ConfigMaps>.
    assert [n for k, ns, n in names if k == "Job" and n.startswith("granite-3-8b-instruct-fill-")]
    assert {n for k, _, n in names if k == "Subscription"} == {"rhods-operator", "nfd", "gpu-operator-certified"}


def test_everything_is_strictly_valid(site_render):
    out, _, manifests = site_render
    crds = CrdCatalog(str(crd_dir()))
    count, errors = validate_tree(str(out), "1.31", crds)
    secrets, secret_errors = validate_tree(str(out) + ".secrets", "1.31", crds)
    assert count + secrets == len(manifests)
    assert [str(e) for e in errors + secret_errors] == []


def test_no_secret_enters_the_gitops_tree(site_render):
    out, _, manifests = site_render
    assert [m["kind"] for _, m in load_tree(str(out)) if m["kind"] == "Secret"] == []
    apart = {m["kind"] for _, m in load_tree(str(out) + ".secrets")}
    assert apart == {"Secret"}
    values = [v for m in manifests if m["kind"] == "Secret" for k, v in (m.get("stringData") or {}).items()
              if k.endswith(("KEY", "KEY_ID", "PASSWORD", "_USER")) or k.endswith(("-key",))]
    text = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert values and [v for v in values if v in text] == []
    # Every kustomization lists exactly the files beside it (the GitOps tool builds them).
    for kustomization in out.rglob("kustomization.yaml"):
        listed = yaml.safe_load(kustomization.read_text())["resources"]
        beside = sorted(p.name for p in kustomization.parent.iterdir() if p.name != "kustomization.yaml")
        assert sorted(listed) == beside, kustomization


def test_every_reference_resolves(site_render):
    _, _, manifests = site_render
    preexisting = declared_preexisting(load_site(SAMPLE))
    assert preexisting == [("Secret", "kitchen-storage", "minio-tls")]
    assert dangling(manifests, preexisting) == []
    # Without the inventory's declaration the TLS Secret is reported, naming who needs it.
    assert dangling(manifests) == [
        "Deployment/kitchen-storage/minio (spec.template.spec.volumes[1]) names Secret/kitchen-storage/minio-tls, "
        "which is neither rendered nor declared pre-existing"]
    without_connections = [m for m in manifests if m["metadata"]["name"] != "aws-connection-kitchen-s3"]
    assert any("Job/kitchen-platform/granite-3-8b-instruct-fill" in p and "aws-connection-kitchen-s3" in p
               for p in dangling(without_connections, preexisting))


def images(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from images(value)
    elif isinstance(node, list):
        for item in node:
            yield from images(item)


def test_every_image_is_pinned_by_digest(site_render):
    _, _, manifests = site_render
    found = [image for m in manifests for image in images(m)]
    assert len(found) >= 6
    assert [i for i in found if "@sha256:" not in i or ":latest" in i] == []
    registry = load_site(SAMPLE)["kitchen_registry"]["host"]
    assert [i for i in found if not i.startswith(registry + "/")] == []


def test_no_secret_reaches_the_output(site_render):
    _, run, manifests = site_render
    credentials = ROOT / "build" / "credentials" / "acme-dc1"
    secret = (credentials / "s3-secret-key").read_text().strip()
    access = (credentials / "s3-access-key").read_text().strip()
    assert len(secret) >= 20 and len(access) >= 16
    assert secret not in run.output and access not in run.output
    verbose = render_site(site_render[0], "-vvv")
    assert verbose.rc == 0
    assert secret not in verbose.output and access not in verbose.output


def test_placeholder_and_offline_settings_of_the_runtime(site_render):
    _, _, manifests = site_render
    (runtime,) = [m for m in manifests if m["kind"] == "ServingRuntime"]
    container = runtime["spec"]["containers"][0]
    assert "--served-model-name={{.Name}}" in container["args"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == env["HF_DATASETS_OFFLINE"] == "1"
    (isvc,) = [m for m in manifests if m["kind"] == "InferenceService"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://granite-3-8b-instruct-weights/"
    assert "--gpu-memory-utilization=0.9" in isvc["spec"]["predictor"]["model"]["args"]


def test_second_render_changes_nothing(site_render):
    out, _, _ = site_render
    before = tree_digest(out)
    again = render_site(out)
    assert again.rc == 0, again.output
    assert again.recap()["changed"] == 0
    assert tree_digest(out) == before


def test_check_mode_of_both_phases_writes_nothing(tmp_path):
    run = render_site(tmp_path / "check", "--check", "--diff")
    assert run.rc == 0, run.output
    assert not (tmp_path / "check").exists()
