"""The scripts the phase 2 Jobs run, executed here for real: the model fill against a real S3
server (SeaweedFS over TLS), the taste test against an unreachable endpoint."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from conftest import role_dir
from s3server import ACCESS_KEY, SECRET_KEY

FILL = role_dir("kserve_vllm") / "files" / "fill_model.py"
TASTE = role_dir("smoke_test") / "files" / "taste.py"
FILES = {"config.json": b'{"architectures": ["GraniteForCausalLM"]}',
         "model-00001-of-00002.safetensors": os.urandom(300_000),
         "model-00002-of-00002.safetensors": os.urandom(200_000),
         "tokenizer/tokenizer.json": b'{"version": "1.0"}'}


def upload(s3_server, prefix, files, sums=None):
    client = s3_server.client()
    if "kitchen-models" not in s3_server.buckets():
        client.create_bucket(Bucket="kitchen-models")
    for path, data in files.items():
        client.put_object(Bucket="kitchen-models", Key="%s/%s" % (prefix, path), Body=data)
    sums = sums if sums is not None else {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    manifest = "".join("%s  %s\n" % (digest, path) for path, digest in sorted(sums.items()))
    client.put_object(Bucket="kitchen-models", Key="%s/SHA256SUMS" % prefix, Body=manifest.encode())


def fill(s3_server, prefix, target, ca=None, sums_file=None):
    env = {"PATH": os.environ["PATH"], "AWS_S3_ENDPOINT": s3_server.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CA_BUNDLE": str(ca or s3_server.tls["ca"]), "KITCHEN_BUCKET": "kitchen-models",
           "KITCHEN_PREFIX": prefix + "/", "KITCHEN_TARGET": str(target)}
    if sums_file:
        env["KITCHEN_SUMS_FILE"] = str(sums_file)
    proc = subprocess.run([sys.executable, str(FILL)], env=env, capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, events


@pytest.mark.playbook
def test_fill_verifies_every_file_then_reuses_the_volume(tmp_path, s3_server):
    upload(s3_server, "good-model", FILES)
    proc, events = fill(s3_server, "good-model", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert events[-1]["event"] == "filled" and events[-1]["files"] == 4
    for path, data in FILES.items():
        assert (tmp_path / path).read_bytes() == data
    assert not (tmp_path / ".kitchen-incoming").exists()
    again, events = fill(s3_server, "good-model", tmp_path)
    assert again.returncode == 0 and [e["event"] for e in events] == ["already-verified"]


@pytest.mark.playbook
def test_flavour_sync_places_the_listed_versions_and_moves_only_new_bytes(tmp_path, s3_server):
    """The adapter volume: phase 3 lists the flavours in service in a local SHA256SUMS (its
    ConfigMap); a version added later downloads only its own files."""
    adapters = {"helpdesk/1.0.0/adapter_config.json": b'{"r": 8}',
                "helpdesk/1.0.0/adapter_model.safetensors": os.urandom(50_000),
                "helpdesk/1.1.0/adapter_config.json": b'{"r": 16}',
                "helpdesk/1.1.0/adapter_model.safetensors": os.urandom(60_000)}
    upload(s3_server, "lora", adapters, sums={})  # no SHA256SUMS in S3 is read: the list is local
    sums = tmp_path / "SHA256SUMS"
    listed = {p: hashlib.sha256(d).hexdigest() for p, d in adapters.items() if "/1.0.0/" in p}
    sums.write_text("".join("%s  %s\n" % (d, p) for p, d in sorted(listed.items())))
    volume = tmp_path / "volume"
    proc, events = fill(s3_server, "lora", volume, sums_file=sums)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (events[-1]["files"], events[-1]["kept"]) == (2, 0)
    assert not (volume / "helpdesk" / "1.1.0").exists()
    every = {p: hashlib.sha256(d).hexdigest() for p, d in adapters.items()}
    sums.write_text("".join("%s  %s\n" % (d, p) for p, d in sorted(every.items())))
    proc, events = fill(s3_server, "lora", volume, sums_file=sums)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (events[-1]["files"], events[-1]["kept"]) == (4, 2)
    assert [e["path"] for e in events if e["event"] == "verified"] == [
        "helpdesk/1.1.0/adapter_config.json", "helpdesk/1.1.0/adapter_model.safetensors"]
    for path, data in adapters.items():
        assert (volume / path).read_bytes() == data


@pytest.mark.playbook
def test_a_flipped_byte_fails_and_nothing_is_placed(tmp_path, s3_server):
    sums = {p: hashlib.sha256(d).hexdigest() for p, d in FILES.items()}
    tampered = dict(FILES)
    shard = bytearray(FILES["model-00002-of-00002.safetensors"])
    shard[1234] ^= 0x01
    tampered["model-00002-of-00002.safetensors"] = bytes(shard)
    upload(s3_server, "tampered-model", tampered, sums)
    proc, events = fill(s3_server, "tampered-model", tmp_path)
    assert proc.returncode == 1
    (failure,) = [e for e in events if e["event"] == "verification-failed"]
    assert len(failure["problems"]) == 1
    assert failure["problems"][0].startswith("model-00002-of-00002.safetensors: sha256 ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.playbook
def test_a_missing_file_is_reported(tmp_path, s3_server):
    partial = {p: d for p, d in FILES.items() if p != "config.json"}
    sums = {p: hashlib.sha256(d).hexdigest() for p, d in FILES.items()}
    upload(s3_server, "partial-model", partial, sums)
    proc, events = fill(s3_server, "partial-model", tmp_path)
    assert proc.returncode == 1
    (failure,) = [e for e in events if e["event"] == "verification-failed"]
    assert [p.split(":")[0] for p in failure["problems"]] == ["config.json"]


@pytest.mark.playbook
def test_the_endpoint_certificate_is_verified(tmp_path, s3_server):
    from s3server import make_ca_and_server_cert
    (tmp_path / "ca").mkdir()
    upload(s3_server, "good-model", FILES)
    proc, events = fill(s3_server, "good-model", tmp_path / "out", ca=make_ca_and_server_cert(tmp_path / "ca")["ca"])
    assert proc.returncode == 2
    (error,) = events
    assert error["event"] == "setup-error" and "certificate verify failed" in error["message"].lower()
    assert not (tmp_path / "out" / "config.json").exists()


def test_taste_reports_an_unreachable_model():
    env = {"PATH": os.environ["PATH"], "KITCHEN_URL": "http://127.0.0.1:9", "KITCHEN_MODEL": "granite",
           "KITCHEN_TIMEOUT": "5"}
    proc = subprocess.run([sys.executable, str(TASTE)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["ok"] is False and "Connection refused" in result["error"]
