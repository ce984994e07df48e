"""The minio role against a real S3 server: buckets created idempotently, CA verified."""


import pytest
import yaml

from conftest import run_playbook
from s3server import ACCESS_KEY, SECRET_KEY

pytestmark = pytest.mark.playbook
SAMPLE = "inventories/openshift-sample"


def run_minio(tmp_path, s3_server, ca_file, *args):
    # Credentials from the environment through a lookup: never plain text in inventory or log.
    overrides = tmp_path / "storage.yml"
    overrides.write_text(yaml.safe_dump({
        "kitchen_storage": {
            "type": "minio", "namespace": "kitchen-storage", "tls_secret": "minio-tls", "size": "10Gi",
            "endpoint": s3_server.endpoint, "region": "us-east-1",
            "access_key": "{{ lookup('ansible.builtin.env', 'TEST_S3_ACCESS_KEY') }}",
            "secret_key": "{{ lookup('ansible.builtin.env', 'TEST_S3_SECRET_KEY') }}",
            "buckets": {"models": "kitchen-models", "adapters": "kitchen-lora", "eval": "kitchen-eval"}},
        "kitchen_ca": {"name": "test-ca", "bundle_file": str(ca_file)}}))
    return run_playbook(SAMPLE, "phase1.yml", "--tags", "minio", "-e", "@%s" % overrides,
                        "-e", "kitchen_delivery=render", "-e", "kitchen_render_dir=%s" % (tmp_path / "render"),
                        "-e", "minio_create_buckets=true", *args,
                        env={"TEST_S3_ACCESS_KEY": ACCESS_KEY, "TEST_S3_SECRET_KEY": SECRET_KEY})


def test_buckets_are_created_once(tmp_path, s3_server):
    first = run_minio(tmp_path, s3_server, s3_server.tls["ca"])
    assert first.rc == 0, first.output
    assert {"kitchen-models", "kitchen-lora", "kitchen-eval", "kitchen-tenant-data"} <= set(s3_server.buckets())
    second = run_minio(tmp_path, s3_server, s3_server.tls["ca"])
    assert second.rc == 0, second.output
    assert second.recap()["changed"] == 0
    assert SECRET_KEY not in first.output + second.output
    connection = yaml.safe_load((tmp_path / "render.secrets" / "phase1" / "minio" /
                                 "secret_kitchen-finance_aws-connection-kitchen-s3.yaml").read_text())
    assert connection["stringData"]["AWS_S3_ENDPOINT"] == s3_server.endpoint
    assert connection["metadata"]["labels"]["opendatahub.io/managed"] == "true"


def test_an_untrusted_endpoint_is_refused(tmp_path, s3_server):
    """The S3 certificate is checked against the configured CA; another CA fails the run."""
    from s3server import make_ca_and_server_cert
    other = tmp_path / "other"
    other.mkdir()
    wrong_ca = make_ca_and_server_cert(other)["ca"]
    run = run_minio(tmp_path, s3_server, wrong_ca)
    assert run.rc != 0
    assert "CERTIFICATE_VERIFY_FAILED" in run.output or "certificate verify failed" in run.output
