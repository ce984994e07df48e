"""Install contract: what AWX/EE users and closed networks install matches what we test with."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT

SITE_PACKAGES = Path(next(p for p in sys.path if p.endswith("site-packages")))


def installed_collection_version(name):
    namespace, collection = name.split(".")
    manifest = SITE_PACKAGES / "ansible_collections" / namespace / collection / "MANIFEST.json"
    return json.loads(manifest.read_text())["collection_info"]["version"]


def test_requirements_yml_matches_the_pinned_bundle():
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    assert {c["name"]: c["version"] for c in wanted} == {
        c["name"]: installed_collection_version(c["name"]) for c in wanted}


def test_pyproject_pins_agree_with_the_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = project["dependencies"] + project["optional-dependencies"]["test"]
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==")
            lock[re.sub(r"[-_.]+", "-", name.lower())] = version
    for pin in pins:
        name, version = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", pin).groups()
        assert lock[re.sub(r"[-_.]+", "-", name.lower())] == version, pin


@pytest.mark.playbook
def test_vendored_tarballs_install_offline(tmp_path):
    """The closed-network path of the README: tarballs in a folder, installed with --offline."""
    vendor, dest = tmp_path / "vendor", tmp_path / "collections"
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(vendor),
                    str(ROOT / "collections" / "ansible_collections" / "privateai" / "kitchen")],
                   check=True, capture_output=True)
    proc = subprocess.run([str(ROOT / "tools" / "install-vendored-collections"), str(vendor), str(dest)],
                          capture_output=True, text=True, env={"PATH": str(BIN) + ":/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (dest / "ansible_collections" / "privateai" / "kitchen" / "MANIFEST.json").is_file()


def test_inventory_reference_is_generated_from_the_schema():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "schema-doc"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_published_bundle_manifest_schema_is_the_one_manifests_are_checked_against():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bundle-schema"), "--check"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
