# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
# Documentation only: the work is done on the controller by the action plugin of the same name.

DOCUMENTATION = r"""
module: render_manifests
short_description: Write a component's Kubernetes manifests for a GitOps tool
description:
  - Writes each manifest to C(<root>/<phase>/<component>/<kind>_<namespace>_<name>.yaml) with a
    C(kustomization.yaml) listing them, and keeps C(<root>/<phase>/kustomization.yaml) listing
    the phase's components, so Argo CD can consume a phase or a component.
  - Deterministic, so a second render with the same input changes nothing and is byte-identical.
    Files are replaced atomically.
  - Secrets never enter the GitOps tree; they are written apart, to
    C(<secrets_root>/<phase>/<component>/), mode 0600 in folders of mode 0700, listed by no
    kustomization, left out of C(--diff), with a C(.gitignore) of C(*) at I(secrets_root) so Git
    never takes them even inside a work tree.
  - Removes files of the component that are no longer rendered (I(prune)).
  - Runs on the controller; check mode reports what would change and writes nothing.
version_added: 0.1.0
author: Private AI Kitchen contributors
options:
  manifests:
    description: The manifests, each with apiVersion, kind and metadata.name; unique by identity.
    type: list
    elements: dict
    required: true
  root:
    description: Render root (kitchen_render_dir).
    type: path
    required: true
  secrets_root:
    description: Where Secrets are written instead; must lie outside I(root).
    type: path
    required: true
  phase:
    description: Roadmap phase, the first sub-directory.
    type: str
    required: true
  component:
    description: The component (role) name, the second sub-directory.
    type: str
    required: true
  prune:
    description: Delete C(*.yaml) files in the component directory that were not rendered this time.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Write tenant manifests for Argo CD
  privateai.kitchen.render_manifests:
    manifests: "{{ __tenants_manifests }}"
    root: /srv/gitops/acme-dc1
    secrets_root: /srv/kitchen-secrets/acme-dc1
    phase: phase1
    component: tenants
"""

RETURN = r"""
directory:
  description: The component directory.
  type: str
  returned: always
files:
  description: Names of the files the component consists of, kustomization.yaml included.
  type: list
  elements: str
  returned: always
written:
  description: Files (relative to root) that were created or changed (or would be, in check mode).
  type: list
  elements: str
  returned: always
secrets:
  description: Paths of the Secret files written apart from the tree.
  type: list
  elements: str
  returned: always
removed:
  description: Files (relative to root; secrets by their full path) removed as no longer rendered.
  type: list
  elements: str
  returned: always
"""
