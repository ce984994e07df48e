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


def test_secrets_stay_out_of_the_gitops_tree_private_and_never_diffed(tmp_path):
    root = tmp_path / "gitops"
    run = render(root, [CONFIG, SECRET], "--diff")
    assert run.rc == 0, run.output
    component = root / "phase1" / "demo"
    assert sorted(p.name for p in component.iterdir()) == ["configmap_team-a_settings.yaml", "kustomization.yaml"]
    assert yaml.safe_load((component / "kustomization.yaml").read_text())["resources"] == \
        ["configmap_team-a_settings.yaml"]
    assert "never-show-this-value" not in "".join(p.read_text() for p in root.rglob("*") if p.is_file())
    # Apart: mode 0600 in a folder of mode 0700, and a .gitignore so Git never takes them.
    secrets = tmp_path / "gitops.secrets"
    secret_file = secrets / "phase1" / "demo" / "secret_team-a_s3.yaml"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret_file.parent.stat().st_mode) == 0o700
    assert (secrets / ".gitignore").read_text() == "*\n"
    assert stat.S_IMODE((component / "configmap_team-a_settings.yaml").stat().st_mode) == 0o644
    assert "mode: offline" in run.output  # the ConfigMap's diff is shown
    assert "never-show-this-value" not in run.output
    assert yaml.safe_load(secret_file.read_text())["stringData"]["AWS_SECRET_ACCESS_KEY"] == "never-show-this-value"
    again = render(root, [CONFIG, SECRET])
    assert again.rc == 0 and again.recap()["changed"] == 0


def test_a_secrets_folder_inside_the_tree_is_refused_before_writing(tmp_path):
    run = render(tmp_path, [CONFIG, SECRET], secrets_root=str(tmp_path / "phase1" / "secrets"))
    assert run.rc != 0 and "must lie outside the GitOps tree" in run.text
    assert not (tmp_path / "phase1").exists()


def test_prune_can_be_turned_off(tmp_path):
    assert render(tmp_path / "t", [CONFIG, SECRET]).rc == 0
    run = render(tmp_path / "t", [CONFIG], prune=False)
    assert run.rc == 0, run.output
    secret = tmp_path / "t.secrets" / "phase1" / "demo" / "secret_team-a_s3.yaml"
    assert secret.exists()
    assert render(tmp_path / "t", [CONFIG]).rc == 0
    assert not secret.exists()


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
