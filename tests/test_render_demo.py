"""`make render-demo` as a user runs it on a machine that cannot reach the sample's sources:
tools/render-demo bundles inventories/openshift-sample from local stand-ins (said loudly),
renders phases 1-3 for GitOps and checks the tree. One run, about a minute on 2 cores."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, crd_dir, load_site, require_tools

from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_import
from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_schemas import (
    CrdCatalog,
    load_tree,
    validate_tree,
)

pytestmark = pytest.mark.playbook


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    require_tools("skopeo", "docker-registry")
    base = tmp_path_factory.mktemp("render-demo")
    out, work = base / "render", base / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "render-demo"), "--out", str(out), "--work", str(work)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    return proc, out, work


def check_lines(proc):
    """{check text before its colon: passed} of the closing PASS / FAIL lines."""
    lines = [line.split(None, 1) for line in proc.stdout.splitlines() if line.startswith("   PASS ")
             or line.startswith("   FAIL ")]
    return {text.split(":")[0]: word == "PASS" for word, text in lines}


def test_the_stand_ins_are_announced_with_what_they_serve(demo):
    proc, _, _ = demo
    assert "The sample's sources (huggingface.co, quay.io, registry.redhat.io) are not reachable here: " \
        "bundling from local stand-ins of the same protocols" in proc.stdout, proc.stdout + proc.stderr
    assert "hf://ibm-granite/granite-3.3-8b-instruct@8f0cd39c2a6e... as a tiny Llama-shaped model" in proc.stdout
    assert "quay.io/vllm/vllm-openai as a one-file stand-in image" in proc.stdout


def test_every_phase_has_its_folder_and_kustomization(demo):
    proc, out, _ = demo
    for phase in ("phase1", "phase2", "phase3"):
        assert (out / phase / "kustomization.yaml").is_file(), proc.stdout + proc.stderr
    # Phase 3 served the sample's flavours from the bundle, gated against the stand-in model.
    assert "serving helpdesk 1.1.0, summarise 1.0.0" in proc.stdout


def test_the_tree_is_strictly_valid_and_checked(demo):
    proc, out, _ = demo
    count, errors = validate_tree(str(out), "1.31", CrdCatalog(str(crd_dir())))
    assert count == len(list(load_tree(str(out)))) > 0 and [str(e) for e in errors] == []
    checks = check_lines(proc)
    for name in ("bundle verified", "strict validation", "every object once across the phase folders",
                 "every kustomization lists exactly its files"):
        assert checks.get(name) is True, proc.stdout
    assert any(name.startswith("every kustomization buildable") and ok for name, ok in checks.items()), proc.stdout


def test_the_bundle_manifest_verifies_with_the_sample_s_sources(demo):
    _, _, work = demo
    result, manifest, _ = bundle_import.verify([str(work / "bundle")])
    assert result["files"] > 0 and manifest["site"] == load_site("inventories/openshift-sample")["kitchen_site_name"]
    assert sorted((a["name"], a["version"]) for a in manifest["adapters"]) == [
        ("helpdesk", "1.0.0"), ("helpdesk", "1.1.0"), ("summarise", "1.0.0")]
    assert [m["name"] for m in manifest["models"]] == ["granite-3-8b-instruct"]
    assert sorted(i["name"] for i in manifest["images"]) == ["minio", "smoke_test", "vllm"]
    assert json.loads((work / "demo-vars.json").read_text())["kitchen_bundle"]["dir"] == str(work / "bundle")


def test_the_gitops_tree_holds_no_secret(demo):
    """Secrets are written beside the tree (build/secrets/<site>), never into it."""
    proc, _, _ = demo
    assert check_lines(proc).get("no Secret and no secret value in the GitOps tree") is True, proc.stdout


def test_the_demo_exits_zero(demo):
    proc, _, _ = demo
    assert proc.returncode == 0, proc.stdout + proc.stderr
