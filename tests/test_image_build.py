"""The single-host kitchen's own images, built offline with real podman: host preparation
(containers.conf), the debootstrap base, then Containerfiles; a second run rebuilds nothing."""

import json
import subprocess

import pytest

from conftest import built_images, require_tools, run_playbook
from ansible_collections.privateai.kitchen.plugins.filter.images import image_references



@pytest.fixture
def needs_podman():
    require_tools("podman", "debootstrap")


def stat(folder, name):
    return {"item": name, "stat": {"exists": True, "path": str(folder / name / "Containerfile")}}


def test_an_image_tag_changes_exactly_when_a_file_of_its_build_folder_or_the_base_changes(tmp_path):
    for name in ("registry", "litellm"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Containerfile").write_text("FROM base\n")
    (tmp_path / "litellm" / "requirements.txt").write_text("litellm==1.102.4 --hash=sha256:aa\n")
    first = image_references([stat(tmp_path, "registry"), stat(tmp_path, "litellm")], "base1", "localhost/kitchen")
    assert first["registry"].startswith("localhost/kitchen/registry:") and len(first["registry"].split(":")[1]) == 12
    assert image_references([stat(tmp_path, "registry")], "base1", "localhost/kitchen/")["registry"] == first["registry"]
    assert image_references([stat(tmp_path, "registry")], "base2", "localhost/kitchen")["registry"] != first["registry"]
    # The lock beside the Containerfile is part of what is built: a new lock, a new image.
    (tmp_path / "litellm" / "requirements.txt").write_text("litellm==1.102.5 --hash=sha256:bb\n")
    assert image_references([stat(tmp_path, "litellm")], "base1", "localhost/kitchen")["litellm"] != first["litellm"]
    (tmp_path / "registry" / "Containerfile").write_text("FROM base\nRUN true\n")
    assert image_references([stat(tmp_path, "registry")], "base1", "localhost/kitchen")["registry"] != first["registry"]


def podman(*args):
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.usefixtures("needs_podman")
@pytest.mark.playbook
def test_images_are_built_offline_once_and_run():
    images = '{"image_build_images": ["registry", "seaweedfs"]}'
    first = run_playbook("inventories/local", "images.yml", "-e", images)
    assert first.rc == 0, first.output
    second = run_playbook("inventories/local", "images.yml", "-e", images)
    assert second.rc == 0, second.output
    assert second.recap()["changed"] == 0, second.output

    info = json.loads(podman("info", "--format", "json").stdout)
    assert info["host"]["ociRuntime"]["name"] == "runc"
    conf = open("/etc/containers/containers.conf", encoding="utf-8").read()
    assert 'runtime = "runc"' in conf and "nofile=" in conf

    references = built_images(second)
    assert sorted(references) == ["registry", "seaweedfs"], second.output
    weed = podman("run", "--rm", references["seaweedfs"], "version")
    assert weed.returncode == 0 and "4.48" in weed.stdout, weed.stdout + weed.stderr
    registry = podman("run", "--rm", "--entrypoint", "/usr/bin/docker-registry", references["registry"], "--version")
    assert registry.returncode == 0 and "distribution" in registry.stdout, registry.stdout + registry.stderr
    # Every image sits on the debootstrap base: its bottom layer is the base's only layer.
    base = json.loads(podman("image", "inspect", "localhost/kitchen/debian-base:bookworm").stdout)[0]
    for reference in references.values():
        image = json.loads(podman("image", "inspect", reference).stdout)[0]
        assert image["RootFS"]["Layers"][0] == base["RootFS"]["Layers"][0]
