"""Preflight as users meet it: one real ansible-playbook run lists every broken rule of the
site at once, and a rejected run leaves nothing behind - not even the credential files a
password lookup of the inventory would generate."""

import shutil

import pytest
import yaml

from conftest import ROOT, run_playbook

pytestmark = pytest.mark.playbook

BROKEN = {
    "kitchen_gateway": {"enabled": True, "hostname": "llm.apps.acme.internal"},
    "kitchen_lora": {"max_loras": 9, "max_cpu_loras": 8},
    "kitchen_cluster": {"openshift_version": "4.18", "kubernetes_version": "1.31", "validate_certs": False},
    "kitchen_images": {"vllm": "quay.io/vllm/vllm-openai@sha256:" + "4" * 64,
                       "model_loader": "registry.acme.internal:5000/kitchen/model-loader@sha256:" + "5" * 64,
                       "smoke_test": "registry.acme.internal:5000/redhat/ubi9/python-311@sha256:" + "1" * 64,
                       "minio": "registry.acme.internal:5000/minio/minio@sha256:" + "9" * 64,
                       "minio_client": "registry.acme.internal:5000/minio/mc@sha256:" + "2" * 64},
    "kitchen_ca": {"name": "acme-root-ca", "bundle_file": "files/missing-ca.pem"},
}


@pytest.fixture
def sample_copy(tmp_path):
    """The sample inventory at inventories/openshift-sample of a scratch tree: its lookups write
    credentials to <tree>/build/credentials, as they would in the checkout."""
    inventory = tmp_path / "inventories" / "openshift-sample"
    shutil.copytree(ROOT / "inventories" / "openshift-sample", inventory)
    return inventory


def test_a_rejected_run_names_every_problem_and_leaves_no_file(sample_copy, tmp_path):
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(BROKEN))
    run = run_playbook(str(sample_copy), "phase1.yml", "-e", "@%s" % (tmp_path / "broken.yml"),
                       "-e", "kitchen_delivery=render", "-e", "kitchen_render_dir=%s" % (tmp_path / "render"))
    assert run.rc != 0
    assert "Preflight found 5 problem(s); nothing was changed." in run.text
    for problem in [
        "kitchen_ca.bundle_file: 'files/missing-ca.pem' (%s/files/missing-ca.pem) does not exist on the controller"
        % sample_copy,
        "kitchen_cluster.validate_certs: False is refused: TLS verification stays on; trust kitchen_ca instead",
        "kitchen_gateway: not supported yet (phase 4)",
        "kitchen_images.vllm: 'quay.io/vllm/vllm-openai@sha256:%s' is not in the internal registry" % ("4" * 64),
        "kitchen_lora.max_cpu_loras: 8 is less than kitchen_lora.max_loras (9)",
    ]:
        assert "- " + problem in run.text, problem
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "inventories" not in p.parts) == [
        (tmp_path / "broken.yml").relative_to(tmp_path)]
    assert not (tmp_path / "build").exists()


def test_the_credentials_are_generated_once_preflight_passed(sample_copy, tmp_path):
    """The control of the test above: the same copy, valid, does generate them."""
    run = run_playbook(str(sample_copy), "preflight.yml")
    assert run.rc == 0, run.output
    assert "Preflight passed." in run.text
    credentials = tmp_path / "build" / "credentials" / "acme-dc1"
    assert sorted(p.name for p in credentials.iterdir()) == ["s3-access-key", "s3-secret-key"]
    assert (credentials / "s3-secret-key").read_text().strip() not in run.output
