"""privateai.kitchen.render_manifests driven through ansible-playbook."""

import json
import stat

import pytest
import yaml

from conftest import run_playbook

pytestmark = pytest.mark.playbook

CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "team-a"},
          "data": {"mode": "offline"}}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": "team-a"},
          "stringData": {"AWS_SECRET_ACCESS_KEY": "never-show-this-value"}}


def render(root, manifests, *args, **extra):
    variables = dict(render_root=str(root), manifests=manifests, **extra)
    return run_playbook("inventories/openshift-sample", "tests/playbooks/render_component.yml",
                        "-e", json.dumps(variables), *args)


def test_secrets_are_private_and_never_diffed(tmp_path):
    run = render(tmp_path, [CONFIG, SECRET], "--diff")
    assert run.rc == 0, run.output
    component = tmp_path / "phase1" / "demo"
    secret_file = component / "secret_team-a_s3.yaml"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((component / "configmap_team-a_settings.yaml").stat().st_mode) == 0o644
    assert "mode: offline" in run.output  # the ConfigMap's diff is shown
    assert "never-show-this-value" not in run.output
    assert yaml.safe_load(secret_file.read_text())["stringData"]["AWS_SECRET_ACCESS_KEY"] == "never-show-this-value"


def test_prune_can_be_turned_off(tmp_path):
    assert render(tmp_path, [CONFIG, SECRET]).rc == 0
    run = render(tmp_path, [CONFIG], prune=False)
    assert run.rc == 0, run.output
    component = tmp_path / "phase1" / "demo"
    assert (component / "secret_team-a_s3.yaml").exists()
    assert yaml.safe_load((component / "kustomization.yaml").read_text())["resources"] == ["configmap_team-a_settings.yaml"]
    assert render(tmp_path, [CONFIG]).rc == 0
    assert not (component / "secret_team-a_s3.yaml").exists()


def test_phase_kustomization_lists_every_component(tmp_path):
    assert render(tmp_path, [CONFIG], component="zeta").rc == 0
    assert render(tmp_path, [CONFIG], component="alpha").rc == 0
    phase = yaml.safe_load((tmp_path / "phase1" / "kustomization.yaml").read_text())
    assert phase["resources"] == ["alpha", "zeta"]


def test_duplicate_manifests_are_refused_before_writing(tmp_path):
    run = render(tmp_path, [CONFIG, CONFIG])
    assert run.rc != 0
    assert "manifest 1 (ConfigMap/team-a/settings) is a duplicate of manifest 0" in run.text
    assert not (tmp_path / "phase1").exists()
