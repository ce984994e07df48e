"""Tenants hold their own S3 keys, never the platform's: the policies the minio role renders,
loaded into a real S3 server's IAM (SeaweedFS), allow a tenant to read models, adapters and
evaluation data and to write only below its own prefix; the keys it renders reach each tenant's
data connection and nothing secret reaches the GitOps tree."""

import json
import time

import botocore.exceptions
import pytest
import yaml

from conftest import load_site, run_playbook
from s3server import SeaweedS3

from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_schemas import load_tree

pytestmark = pytest.mark.playbook
SAMPLE = "inventories/openshift-sample"
TENANTS = ("kitchen-finance", "kitchen-platform")


def render_storage(out, credentials, *extra, env=None):
    return run_playbook(SAMPLE, "phase1.yml", "--tags", "minio", "-e", "kitchen_delivery=render",
                        "-e", "kitchen_render_dir=%s" % out, "-e", "kitchen_credentials_dir=%s" % credentials, *extra,
                        env=env)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("storage")
    run = render_storage(folder / "tree", folder / "credentials")
    assert run.rc == 0, run.output
    tree = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for _, d in load_tree(str(folder / "tree"))}
    secrets = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for _, d in load_tree(str(folder / "tree.secrets"))}
    return folder, run, tree, secrets


@pytest.fixture(scope="module")
def iam_s3(tmp_path_factory):
    server = SeaweedS3(tmp_path_factory.mktemp("iam-s3"), iam=True).start()
    yield server
    server.stop()


def allowed(call):
    try:
        call()
        return True
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied", exc.response
        return False


def test_each_tenant_may_read_the_platform_content_and_write_only_its_own_prefix(rendered, iam_s3):
    _, _, tree, _ = rendered
    policies = tree[("ConfigMap", "kitchen-storage", "kitchen-s3-tenant-policies")]["data"]
    assert sorted(policies) == ["%s.json" % t for t in TENANTS]
    buckets = dict(load_site(SAMPLE)["kitchen_storage"]["buckets"], tenant_data="kitchen-tenant-data")
    admin, iam = iam_s3.client(), iam_s3.client("iam")
    for bucket in buckets.values():
        admin.create_bucket(Bucket=bucket)
    admin.put_object(Bucket=buckets["models"], Key="granite/model.safetensors", Body=b"weights")
    admin.put_object(Bucket=buckets["adapters"], Key="lora/helpdesk/1.1.0/adapter.safetensors", Body=b"lora")
    clients = {}
    for tenant in TENANTS:  # the rendered policy document, as MinIO would be given it
        iam.create_user(UserName=tenant)
        key = iam.create_access_key(UserName=tenant)["AccessKey"]
        iam.put_user_policy(UserName=tenant, PolicyName="kitchen-tenant", PolicyDocument=policies[tenant + ".json"])
        clients[tenant] = iam_s3.client(access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"])
    time.sleep(1)  # the IAM change reaches the S3 gateway
    finance, platform = clients["kitchen-finance"], clients["kitchen-platform"]
    data = buckets["tenant_data"]
    assert allowed(lambda: finance.get_object(Bucket=buckets["models"], Key="granite/model.safetensors"))
    assert allowed(lambda: finance.list_objects_v2(Bucket=buckets["adapters"]))
    assert allowed(lambda: finance.put_object(Bucket=data, Key="kitchen-finance/notes.txt", Body=b"mine"))
    assert allowed(lambda: platform.put_object(Bucket=data, Key="kitchen-platform/notes.txt", Body=b"ours"))
    assert allowed(lambda: finance.list_objects_v2(Bucket=data, Prefix="kitchen-finance/"))
    # No tenant overwrites a model or an adapter version, or reaches another tenant's objects.
    assert not allowed(lambda: finance.put_object(Bucket=buckets["models"], Key="granite/model.safetensors", Body=b"x"))
    assert not allowed(lambda: finance.delete_object(Bucket=buckets["models"], Key="granite/model.safetensors"))
    assert not allowed(lambda: platform.put_object(Bucket=buckets["adapters"], Key="lora/helpdesk/1.1.0/x", Body=b"x"))
    assert not allowed(lambda: finance.put_object(Bucket=buckets["eval"], Key="helpdesk.jsonl", Body=b"x"))
    assert not allowed(lambda: finance.get_object(Bucket=data, Key="kitchen-platform/notes.txt"))
    assert not allowed(lambda: finance.put_object(Bucket=data, Key="kitchen-platform/notes.txt", Body=b"x"))
    assert not allowed(lambda: finance.list_objects_v2(Bucket=data, Prefix="kitchen-platform/"))
    assert not allowed(lambda: finance.list_objects_v2(Bucket=data))
    assert not allowed(lambda: finance.create_bucket(Bucket="kitchen-finance-own"))
    assert admin.get_object(Bucket=buckets["models"], Key="granite/model.safetensors")["Body"].read() == b"weights"


def test_data_connections_carry_the_tenants_own_keys_and_the_root_keys_stay_in_the_platform(rendered):
    folder, run, tree, secrets = rendered
    root = secrets[("kitchen-storage", "minio-root")]["stringData"]
    keys = secrets[("kitchen-storage", "kitchen-s3-tenants")]["stringData"]
    seen = set()
    for tenant in TENANTS:
        connection = secrets[(tenant, "aws-connection-kitchen-s3")]["stringData"]
        own = (keys[tenant + "-access-key"], keys[tenant + "-secret-key"])
        assert (connection["AWS_ACCESS_KEY_ID"], connection["AWS_SECRET_ACCESS_KEY"]) == own
        assert root["MINIO_ROOT_PASSWORD"] not in own and own not in seen
        seen.add(own)
        assert (folder / "credentials" / ("s3-tenant-%s-secret-key" % tenant)).read_text().strip() == own[1]
    # The root keys are in the platform's namespace only; nothing secret in the tree or the log.
    holders = [key for key, s in secrets.items() if root["MINIO_ROOT_PASSWORD"] in json.dumps(s)]
    assert holders == [("kitchen-storage", "minio-root")]
    text = "".join(p.read_text() for p in (folder / "tree").rglob("*") if p.is_file())
    for value in [root["MINIO_ROOT_PASSWORD"]] + list(keys.values()):
        assert value not in text and value not in run.output
    assert not [key for key in tree if key[0] == "Secret"]


def test_the_users_job_runs_mc_in_the_platform_namespace_with_the_root_keys(rendered):
    _, _, tree, _ = rendered
    (job,) = [d for (kind, _, name), d in tree.items() if kind == "Job" and name.startswith("minio-tenants-")]
    assert job["metadata"]["namespace"] == "kitchen-storage"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == load_site(SAMPLE)["kitchen_images"]["minio_client"]
    assert container["envFrom"] == [{"secretRef": {"name": "minio-root"}}]
    script = tree[("ConfigMap", "kitchen-storage", "kitchen-minio-tenants")]["data"]["tenant_users.sh"]
    assert "mc admin policy create" in script and "mc admin policy attach" in script
    fence = tree[("NetworkPolicy", "kitchen-storage", "kitchen-allow-s3")]["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "kitchen-minio-tenants"}}} in fence


def test_keys_are_generated_once_and_a_dry_run_writes_none(rendered, tmp_path):
    folder, _, _, _ = rendered
    again = render_storage(folder / "tree", folder / "credentials")
    assert again.rc == 0 and again.recap()["changed"] == 0, again.output
    dry = render_storage(tmp_path / "tree", tmp_path / "credentials", "--check")
    assert dry.rc == 0, dry.output
    assert not (tmp_path / "credentials").exists() and not (tmp_path / "tree").exists()


def test_an_external_store_needs_each_tenants_keys_and_uses_them(tmp_path):
    storage = load_site(SAMPLE)["kitchen_storage"]
    external = {key: storage[key] for key in ("region", "access_key", "secret_key", "buckets")}
    external.update(type="external", endpoint="https://s3.acme.internal")
    run = render_storage(tmp_path / "tree", tmp_path / "credentials", "-e", json.dumps({"kitchen_storage": external}))
    assert run.rc != 0
    assert "kitchen_storage.tenant_credentials.kitchen-finance: required" in run.output
    assert not (tmp_path / "tree").exists() and not (tmp_path / "credentials").exists()
    # Read from the environment, as a secret store would hand them over (never plain text).
    env = {"TEST_KEY_%d" % i: "sk-%s-secret" % t for i, t in enumerate(TENANTS)}
    env.update({"TEST_ACCESS_%d" % i: "AK-" + t for i, t in enumerate(TENANTS)})
    external["tenant_credentials"] = {t: {"access_key": "{{ lookup('ansible.builtin.env', 'TEST_ACCESS_%d') }}" % i,
                                          "secret_key": "{{ lookup('ansible.builtin.env', 'TEST_KEY_%d') }}" % i}
                                      for i, t in enumerate(TENANTS)}
    external["tenant_credentials"]["kitchen-typo"] = dict(external["tenant_credentials"]["kitchen-finance"])
    overrides = tmp_path / "external.yml"
    overrides.write_text(yaml.safe_dump({"kitchen_storage": external}))
    run = render_storage(tmp_path / "tree", tmp_path / "credentials", "-e", "@%s" % overrides, env=env)
    assert run.rc != 0 and "kitchen_storage.tenant_credentials.kitchen-typo: 'kitchen-typo' is not a tenant" in run.output
    del external["tenant_credentials"]["kitchen-typo"]
    overrides.write_text(yaml.safe_dump({"kitchen_storage": external}))
    run = render_storage(tmp_path / "tree", tmp_path / "credentials", "-e", "@%s" % overrides, env=env)
    assert run.rc == 0, run.output
    connection = yaml.safe_load((tmp_path / "tree.secrets" / "phase1" / "minio" /
                                 "secret_kitchen-finance_aws-connection-kitchen-s3.yaml").read_text())["stringData"]
    assert (connection["AWS_ACCESS_KEY_ID"], connection["AWS_SECRET_ACCESS_KEY"]) == ("AK-kitchen-finance",
                                                                                      "sk-kitchen-finance-secret")
    assert "sk-kitchen-finance-secret" not in run.output
    assert not (tmp_path / "credentials").exists()  # nothing generated for an external store
