# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin: write one component's manifests for GitOps, in one step, on the controller."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.privateai.kitchen.plugins.module_utils.files import atomic_write
from ansible_collections.privateai.kitchen.plugins.module_utils.manifest_render import (
    kustomization_yaml,
    manifest_filename,
    manifest_problems,
    manifest_yaml,
)

KUSTOMIZATION = "kustomization.yaml"


def _read(path):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("manifests", "root", "secrets_root", "phase", "component", "prune"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        for required in ("manifests", "root", "secrets_root", "phase", "component"):
            if args.get(required) in (None, ""):
                raise AnsibleActionFail("render_manifests: '%s' is required" % required)
        manifests = args["manifests"]
        problems = manifest_problems(manifests)
        if problems:
            raise AnsibleActionFail("render_manifests: %s" % "; ".join(problems))
        root = os.path.abspath(os.path.expanduser(to_text(args["root"])))
        secrets_root = os.path.abspath(os.path.expanduser(to_text(args["secrets_root"])))
        if secrets_root == root or secrets_root.startswith(root + os.sep) or root.startswith(secrets_root + os.sep):
            raise AnsibleActionFail("render_manifests: secrets_root %s must lie outside the GitOps tree %s (and not "
                                    "hold it): nothing secret may reach the tree" % (secrets_root, root))
        phase, component = to_text(args["phase"]), to_text(args["component"])
        phase_dir = os.path.join(root, phase)
        component_dir = os.path.join(phase_dir, component)
        secrets_dir = os.path.join(secrets_root, phase, component)
        prune = bool(args.get("prune", True))
        check = self._task.check_mode
        want_diff = self._task.diff

        # Desired state per folder: file name -> content. Secrets go apart from the GitOps tree,
        # unlisted by any kustomization (applied by hand or loaded into a secret store).
        tree = {manifest_filename(m): manifest_yaml(m) for m in manifests if m.get("kind") != "Secret"}
        secrets = {manifest_filename(m): manifest_yaml(m) for m in manifests if m.get("kind") == "Secret"}
        tree[KUSTOMIZATION] = kustomization_yaml(sorted(n for n in tree if n != KUSTOMIZATION))

        # The phase lists its components: the ones already rendered plus this one.
        components = {component}
        if os.path.isdir(phase_dir):
            components.update(n for n in os.listdir(phase_dir)
                              if os.path.isfile(os.path.join(phase_dir, n, KUSTOMIZATION)))

        plan = [(os.path.join(component_dir, name), content, 0o644, False) for name, content in tree.items()]
        plan.append((os.path.join(phase_dir, KUSTOMIZATION), kustomization_yaml(sorted(components)), 0o644, False))
        plan += [(os.path.join(secrets_dir, name), content, 0o600, True) for name, content in secrets.items()]
        if secrets:  # even inside a Git work tree, Git never takes the secrets folder
            plan.append((os.path.join(secrets_root, ".gitignore"), "*\n", 0o600, False))
        stale = []
        if prune:
            stale = [os.path.join(component_dir, n) for n in sorted(_yaml_files(component_dir) - set(tree))]
            stale += [os.path.join(secrets_dir, n) for n in sorted(_yaml_files(secrets_dir) - set(secrets))]

        written, diffs = [], []
        for path, content, mode, secret in plan:
            before = _read(path)
            if before == content:
                continue
            written.append(_shown(path, root))
            if want_diff and not secret:
                diffs.append({"before_header": path, "after_header": path,
                              "before": before or "", "after": content})
            if not check:
                os.makedirs(os.path.dirname(path), mode=0o700 if secret else 0o755, exist_ok=True)
                atomic_write(path, content.encode("utf-8"), mode)
        for path in stale:
            if want_diff:
                diffs.append({"before_header": path, "after_header": "(removed)", "before": "", "after": ""})
            if not check:
                os.unlink(path)

        result.update(
            changed=bool(written or stale),
            directory=component_dir,
            files=sorted(tree),
            secrets=sorted(os.path.join(secrets_dir, n) for n in secrets),
            written=written,
            removed=[_shown(p, root) for p in stale],
        )
        if diffs:
            result["diff"] = diffs
        return result


def _yaml_files(folder):
    if not os.path.isdir(folder):
        return set()
    return {n for n in os.listdir(folder) if n.endswith((".yaml", ".yml"))}


def _shown(path, root):
    """A path as reported: relative to the GitOps tree, or the secrets folder's absolute path."""
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else path
