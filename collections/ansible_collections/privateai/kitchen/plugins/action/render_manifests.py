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
    _VALID_ARGS = frozenset(("manifests", "root", "phase", "component", "prune"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        for required in ("manifests", "root", "phase", "component"):
            if args.get(required) in (None, ""):
                raise AnsibleActionFail("render_manifests: '%s' is required" % required)
        manifests = args["manifests"]
        problems = manifest_problems(manifests)
        if problems:
            raise AnsibleActionFail("render_manifests: %s" % "; ".join(problems))
        root = os.path.abspath(os.path.expanduser(to_text(args["root"])))
        phase_dir = os.path.join(root, to_text(args["phase"]))
        component = to_text(args["component"])
        component_dir = os.path.join(phase_dir, component)
        prune = bool(args.get("prune", True))
        check = self._task.check_mode
        want_diff = self._task.diff

        # Desired state: file name -> (content, mode, secret).
        desired = {}
        for manifest in manifests:
            secret = manifest.get("kind") == "Secret"
            desired[manifest_filename(manifest)] = (manifest_yaml(manifest), 0o600 if secret else 0o644, secret)
        desired[KUSTOMIZATION] = (kustomization_yaml(list(desired)), 0o644, False)

        existing = set()
        if os.path.isdir(component_dir):
            existing = {n for n in os.listdir(component_dir) if n.endswith((".yaml", ".yml"))}
        stale = sorted(existing - set(desired)) if prune else []

        # The phase lists its components: the ones already rendered plus this one.
        components = {component}
        if os.path.isdir(phase_dir):
            components.update(n for n in os.listdir(phase_dir)
                              if os.path.isfile(os.path.join(phase_dir, n, KUSTOMIZATION)))
        phase_file = os.path.join(phase_dir, KUSTOMIZATION)
        phase_content = kustomization_yaml(sorted(components))

        written, diffs = [], []
        plan = [(os.path.join(component_dir, name), content, mode, secret)
                for name, (content, mode, secret) in desired.items()]
        plan.append((phase_file, phase_content, 0o644, False))
        for path, content, mode, secret in plan:
            before = _read(path)
            if before == content:
                continue
            written.append(os.path.relpath(path, root))
            if want_diff and not secret:
                diffs.append({"before_header": path, "after_header": path,
                              "before": before or "", "after": content})
            if not check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                atomic_write(path, content.encode("utf-8"), mode)
        for name in stale:
            path = os.path.join(component_dir, name)
            if want_diff:
                diffs.append({"before_header": path, "after_header": "(removed)", "before": "", "after": ""})
            if not check:
                os.unlink(path)

        result.update(
            changed=bool(written or stale),
            directory=component_dir,
            files=sorted(desired),
            written=written,
            removed=[os.path.relpath(os.path.join(component_dir, n), root) for n in stale],
        )
        if diffs:
            result["diff"] = diffs
        return result
