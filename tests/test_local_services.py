"""The single-host kitchen's foundation with real podman: the kitchen CA, the registry
(docker-registry, TLS, htpasswd) and S3 (SeaweedFS, TLS, the site's keys) in containers,
on ports of their own so that a kitchen already running on this host is left alone."""

import base64
import json
import shutil
import subprocess
import time

import pytest
import requests
import yaml

from conftest import built_images, require_tools, run_playbook
from registry import write_oci_image

pytestmark = pytest.mark.playbook


@pytest.fixture(autouse=True, scope="module")
def _host_tools():
    require_tools("podman", "skopeo")


PREFIX = "kitchen-test"


def podman(*args, check=True):
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 or not check, proc.stderr
    return proc


@pytest.fixture(scope="module")
def images():
    run = run_playbook("inventories/local", "images.yml", "-e", '{"image_build_images": ["registry", "seaweedfs"]}')
    assert run.rc == 0, run.output
    return built_images(run)


@pytest.fixture(scope="module")
def site(tmp_path_factory, images):
    root = tmp_path_factory.mktemp("local-services")
    data = root / "data"
    secret = "{{ lookup('ansible.builtin.password', '%s/secrets/%%s length=%%d chars=ascii_letters,digits') }}" % data
    variables = {
        "kitchen_host": {"data_dir": str(data), "network_name": PREFIX},
        "kitchen_ca": {"name": PREFIX, "bundle_file": str(data / "pki" / "ca.pem"),
                       "key_file": str(data / "pki" / "ca.key"), "generate": True},
        "kitchen_registry": {"host": "localhost:15443", "push_username": "kitchen",
                             "push_password": secret % ("registry", 24)},
        "kitchen_storage": {"endpoint": "https://localhost:18333", "access_key": secret % ("s3-access", 20),
                            "secret_key": secret % ("s3-secret", 40),
                            "buckets": {"models": "kitchen-models", "adapters": "kitchen-lora", "eval": "kitchen-eval"}},
        "local_registry_image": images["registry"], "local_registry_container": PREFIX + "-registry",
        "local_s3_image": images["seaweedfs"], "local_s3_container": PREFIX + "-s3",
        "local_pki_host_trust": False,  # the host trust store is proven by test_local_kitchen
    }
    (root / "vars.yml").write_text(yaml.safe_dump(variables))
    yield {"root": root, "data": data, "vars": root / "vars.yml"}
    for name in ("registry", "s3"):
        podman("rm", "--force", "--time", "2", "%s-%s" % (PREFIX, name), check=False)
    shutil.rmtree("/etc/containers/certs.d/localhost:15443", ignore_errors=True)


def secret(site, name):
    return (site["data"] / "secrets" / name).read_text().strip()


def test_registry_and_s3_come_up_in_containers_and_a_rerun_changes_nothing(site):
    first = run_playbook("inventories/local", "tests/playbooks/local_services.yml", "-e", "@%s" % site["vars"])
    assert first.rc == 0, first.output
    second = run_playbook("inventories/local", "tests/playbooks/local_services.yml", "-e", "@%s" % site["vars"])
    assert second.rc == 0, second.output
    assert second.recap()["changed"] == 0, second.output
    for name in ("registry", "s3-access", "s3-secret"):
        assert secret(site, name) not in first.output + second.output

    ca = str(site["data"] / "pki" / "ca.pem")
    # Registry: TLS from the kitchen CA, credentials required, a real push works.
    assert requests.get("https://localhost:15443/v2/", verify=ca, timeout=10).status_code == 401
    wrong = requests.get("https://localhost:15443/v2/", verify=ca, auth=("kitchen", "wrong"), timeout=10)
    assert wrong.status_code == 401
    layout = site["root"] / "image"
    digest = write_oci_image(layout, "1.0", {"etc/hello": b"hello"})
    authfile = site["root"] / "auth.json"
    authfile.write_text(json.dumps({"auths": {"localhost:15443": {
        "auth": base64.b64encode(("kitchen:" + secret(site, "registry")).encode()).decode()}}}))
    pushed = subprocess.run(["skopeo", "copy", "--quiet", "--dest-authfile", str(authfile), "--preserve-digests",
                             "oci:%s:1.0" % layout, "docker://localhost:15443/test/hello:1.0"],
                            capture_output=True, text=True, check=False)
    assert pushed.returncode == 0, pushed.stderr  # trusted through /etc/containers/certs.d, as podman does
    inspected = subprocess.run(["skopeo", "inspect", "--authfile", str(authfile), "--format", "{{.Digest}}",
                                "docker://localhost:15443/test/hello:1.0"], capture_output=True, text=True, check=True)
    assert inspected.stdout.strip() == digest

    # S3: the site's keys, TLS from the kitchen CA, the three buckets.
    import boto3
    from botocore.exceptions import ClientError

    def client(secret_key):
        return boto3.client("s3", endpoint_url="https://localhost:18333", aws_access_key_id=secret(site, "s3-access"),
                            aws_secret_access_key=secret_key, region_name="us-east-1", verify=ca)

    s3 = client(secret(site, "s3-secret"))
    assert sorted(b["Name"] for b in s3.list_buckets()["Buckets"]) == ["kitchen-eval", "kitchen-lora", "kitchen-models"]
    s3.put_object(Bucket="kitchen-eval", Key="probe.txt", Body=b"probe")
    assert s3.get_object(Bucket="kitchen-eval", Key="probe.txt")["Body"].read() == b"probe"
    with pytest.raises(ClientError):
        client("not-the-secret").list_buckets()


def test_the_services_are_published_on_loopback_only_and_restart_after_a_crash(site):
    for name, port in (("registry", "15443"), ("s3", "18333")):
        container = json.loads(podman("inspect", "%s-%s" % (PREFIX, name)).stdout)[0]
        assert container["HostConfig"]["RestartPolicy"]["Name"] == "always"
        bindings = [b for ports in container["HostConfig"]["PortBindings"].values() for b in ports]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": port}]
        assert podman("healthcheck", "run", "%s-%s" % (PREFIX, name), check=False).returncode == 0
        assert container["Config"]["Labels"]["app.kubernetes.io/part-of"] == "private-ai-kitchen"

    # A crash (not `podman kill`, which restart policies ignore): the main process dies.
    name = PREFIX + "-s3"
    pid = podman("inspect", name, "--format", "{{.State.Pid}}").stdout.strip()
    subprocess.run(["kill", "-9", pid], check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = podman("inspect", name, "--format", "{{.RestartCount}} {{.State.Status}} {{.State.Pid}}").stdout.split()
        if state[0] != "0" and state[1] == "running" and state[2] != pid:
            break
        time.sleep(1)
    assert state[0] != "0" and state[1] == "running", state
    ca = str(site["data"] / "pki" / "ca.pem")
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get("https://localhost:18333/healthz", verify=ca, timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "S3 did not come back after its restart"
        time.sleep(1)
