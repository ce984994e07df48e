"""Shared helpers: paths, the site contract, and running real ansible-playbook."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "collections"))
BIN = Path(sys.executable).parent

from ansible_collections.privateai.kitchen.plugins.module_utils.site_contract import (  # noqa: E402
    SiteValidator,
    load_schema,
)


def crd_dir() -> Path:
    """The upstream CRDs every custom resource is validated against. Missing is an error of the
    suite, never a reason to skip: a check without its input proves nothing."""
    path = Path(os.environ.get("KITCHEN_CRD_DIR") or ROOT.parent / "shared" / "crds")
    if not path.is_dir() or not any(path.glob("*.yaml")):
        pytest.fail("no CRD folder at %s (set KITCHEN_CRD_DIR to the folder of upstream CRD YAML files)" % path,
                    pytrace=False)
    return path


# ansible.cfg's roles_path: roles grouped by the platform they serve.
ROLE_GROUPS = ("common", "openshift", "podman")


def role_dir(name: str) -> Path:
    """The folder of a role, whichever platform group holds it."""
    (found,) = [ROOT / "roles" / group / name for group in ROLE_GROUPS if (ROOT / "roles" / group / name).is_dir()]
    return found


def require_tools(*names):
    """Fail (never skip) where a host tool the test drives is missing: `make test` installs them
    (tools/install-host-packages), so a missing one is a broken set-up, not a reason to pass."""
    missing = [name for name in names if not shutil.which(name)]
    if missing:
        pytest.fail("needs %s on PATH (make test installs them with tools/install-host-packages)"
                    % ", ".join(missing), pytrace=False)


# The modules that drive the host itself (podman's containers, networks and images, the
# registries configuration, the CA trust store): one lane, in file order, started first as
# the longest. Every other module is a unit of its own (its module fixtures set up once),
# isolated by free ports and temporary folders. `make test` runs two lanes (pytest -n 2);
# without -n the order is the same, in one lane.
HOST_LANE = ("test_image_build.py", "test_local_services.py", "test_local_kitchen.py", "test_router_hook.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in HOST_LANE)  # stable: file order kept


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduling by scope, the host lane one scope. (Its xdist_group marks
    rename node ids, which pytest 9 no longer reads: every test would be a unit of its own.)"""
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            return "host" if module.rsplit("/", 1)[-1] in HOST_LANE else module

    config.option.loadscopereorder = False  # collection order: the longest lane first
    return Lanes(config, log)


@pytest.fixture(scope="session")
def validator():
    return SiteValidator(load_schema(str(ROOT / "schemas" / "site.schema.yaml")))


def load_site(inventory: str) -> dict:
    """The kitchen_* variables of an inventory's group_vars/all, as written (untemplated)."""
    site = {}
    for path in sorted((ROOT / inventory / "group_vars" / "all").glob("*.yml")):
        site.update(yaml.safe_load(path.read_text()) or {})
    return site


class PlaybookRun:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        # The yaml callback wraps long messages: compare text with whitespace folded.
        self.text = " ".join(self.output.split())

    def recap(self) -> dict:
        """Counts of the PLAY RECAP line of localhost, e.g. {'ok': 20, 'changed': 0, ...}."""
        line = next(l for l in self.output.splitlines() if re.match(r"^localhost\s+:", l))
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def run_playbook(inventory, playbook, *args, env=None) -> PlaybookRun:
    environment = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                       ANSIBLE_FORCE_COLOR="0", ANSIBLE_DEPRECATION_WARNINGS="0")
    environment.update(env or {})
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(ROOT / inventory),
         str(ROOT / (playbook if "/" in playbook else "playbooks/" + playbook)), *args],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600, check=False,
    )
    return PlaybookRun(proc)


def built_images(run: PlaybookRun) -> dict:
    """{name: local reference} of the images playbooks/images.yml reports having built."""
    return dict(line.strip().split(": ", 1) for line in run.output.splitlines()
                if re.match(r"^\s+[a-z0-9-]+: localhost/kitchen/[a-z0-9-]+:[0-9a-f]{12}$", line))


def tree_digest(root: Path) -> dict:
    """{relative path: sha256} of every file below root."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (SeaweedFS) on loopback with TLS from a test CA."""
    from s3server import SeaweedS3
    server = SeaweedS3(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


EMULATOR = ROOT / "tests" / "emulator" / "kube_emulator.py"


@pytest.fixture
def emulator(tmp_path, request):
    """The Kubernetes API emulator (tests/emulator), started for one test; indirect parameters:
    nodes {name: GPUs or 'mig-1g.10gb:7'}, never_ready [Kind/namespace/name], eval_scores {flavour@version: rate}."""
    options = getattr(request, "param", {})
    kubeconfig = tmp_path / "kubeconfig"
    args = [sys.executable, str(EMULATOR), "--crd-dir", str(crd_dir()), "--kubeconfig", str(kubeconfig)]
    for node, gpus in options.get("nodes", {"gpu-node-1.acme.internal": 1, "gpu-node-2.acme.internal": 1}).items():
        args += ["--node", "%s=%s" % (node, gpus)]
    for target in options.get("never_ready", []):
        args += ["--never-ready", target]
    for candidate, rate in options.get("eval_scores", {}).items():
        args += ["--eval-score", "%s=%s" % (candidate, rate)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(tmp_path / "emulator.log", "wb"), text=True)
    url = json.loads(process.stdout.readline())["url"]
    yield {"kubeconfig": kubeconfig, "url": url}
    process.terminate()
    process.wait(timeout=10)


def emulator_call(url, method, path, body=None):
    """One request to the emulator's API, as JSON both ways (creating the objects a test needs)."""
    import urllib.request

    request = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
