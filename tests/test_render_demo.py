"""`make render-demo` as a user runs it on a machine that cannot reach the sample's sources:
tools/render-demo bundles inventories/openshift-sample from local stand-ins (said loudly),
renders phases 1-3 for GitOps and checks the tree. Two runs, about a minute on 2 cores.
--sources stand-in: the same path as on this offline machine, wherever the test runs, and no
probe of a public host."""

import importlib.util
import json
import socket
import subprocess
import sys
from importlib.machinery import SourceFileLoader

import pytest

from conftest import ROOT, crd_dir, load_site, require_tools, tree_digest

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
    return render_demo(out, work), out, work


def render_demo(out, work):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "render-demo"), "--sources", "stand-in",
                           "--out", str(out), "--work", str(work)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)


def test_the_probe_names_the_sample_s_network_sources_and_tells_open_from_closed(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)  # it would name another Hub
    tool = load_tool("render-demo")
    assert tool.source_hosts(load_site("inventories/openshift-sample")) == {
        "huggingface.co": 443, "quay.io": 443, "registry.redhat.io": 443}
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert tool.reachable("127.0.0.1", port, timeout=1)
    assert not tool.reachable("127.0.0.1", port, timeout=1)


def load_tool(name):
    loader = SourceFileLoader(name.replace("-", "_"), str(ROOT / "tools" / name))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def check_lines(proc):
    """{check text before its colon: passed} of the closing PASS / FAIL lines."""
    lines = [line.split(None, 1) for line in proc.stdout.splitlines() if line.startswith("   PASS ")
             or line.startswith("   FAIL ")]
    return {text.split(":")[0]: word == "PASS" for word, text in lines}


def test_the_stand_ins_are_announced_with_what_they_serve(demo):
    proc, _, _ = demo
    assert "The sample's sources (huggingface.co, quay.io, registry.redhat.io) are not used (--sources stand-in): " \
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
    """Secrets are written apart from the tree (<tree>.secrets), never into it."""
    proc, _, _ = demo
    assert check_lines(proc).get("no Secret and no secret value in the GitOps tree") is True, proc.stdout


def test_the_demo_exits_zero(demo):
    proc, _, _ = demo
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_second_run_adds_nothing_and_changes_nothing(demo):
    """The stand-ins serve the same bytes again (seeded; images by digest): the bundle has
    nothing to add and no phase changes a file."""
    first, out, work = demo
    before = tree_digest(out)
    proc = render_demo(out, work)
    assert proc.returncode == first.returncode, proc.stdout + proc.stderr
    assert "0 to add (0 B), 10 already in the bundle" in (work / "logs" / "bundle.log").read_text()
    steps = [line for line in proc.stdout.splitlines() if line.startswith("   done in ")]
    assert len(steps) == 5 and all("changed=0" in line for line in steps[1:]), proc.stdout
    assert tree_digest(out) == before


def test_the_secret_check_finds_a_secret_and_a_credential_outside_one(tmp_path):
    checks = load_tool("check-render")
    tree = tmp_path / "phase1" / "minio"
    tree.mkdir(parents=True)
    secret = "S3cr3t-value-of-the-site"
    (tree / "configmap_a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: plain}\n")
    site = {"kitchen_site_name": "no-such-site-%s" % tmp_path.name}
    assert checks.no_secrets(tmp_path, site)[0] is True
    (tree / "secret_b.yaml").write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: b}\n"
                                        "stringData: {AWS_SECRET_ACCESS_KEY: %s, AWS_S3_BUCKET: kitchen-models}\n" % secret)
    (tree / "configmap_c.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
                                           "data: {copied: %s, bucket: kitchen-models}\n" % secret)
    ok, text = checks.no_secrets(tmp_path, site)
    assert not ok and "1 Secret manifest(s) (phase1/minio/secret_b.yaml)" in text
    assert "2 file(s) with one of the site's 1 credential value(s)" in text and secret not in text
