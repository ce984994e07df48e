# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Secrets of a site description: whether one is written in clear in the inventory, and the
untemplated site with its secrets set aside (preflight templates them last, see validate_site)."""

from __future__ import annotations

# Stands in for a secret preflight has not templated yet; long enough for every secret's schema.
DEFERRED_SECRET = "deferred-secret"


def replace_secrets(validator, raw_site: dict, stand_in: str = DEFERRED_SECRET) -> dict:
    """The untemplated site with every secret the schema can find in it replaced by a stand-in.
    Only the containers along each secret's path are copied: the other values keep their
    (inventory) origin and trust for templating. A secret inside a templated container (a
    whole mapping from one vault variable) cannot be told apart and stays as it is."""
    site = dict(raw_site)
    for parts in validator.secret_paths(raw_site):
        node = site
        for part in parts[:-1]:
            node[part] = list(node[part]) if isinstance(node[part], list) else dict(node[part])
            node = node[part]
        node[parts[-1]] = stand_in
    return site


def is_plain_text_secret(raw) -> bool:
    """True for a literal string written in clear in an inventory file or on the command line."""
    if not isinstance(raw, str):
        return False
    type_name = type(raw).__name__
    if "Encrypted" in type_name or "Vault" in type_name:
        return False  # inline !vault value
    if "{{" in raw or "{%" in raw:
        return False  # a lookup or a vault variable
    origin = _origin_path(raw)
    if origin and _is_vault_file(origin):
        return False  # the whole vars file is vault-encrypted
    return True


def _origin_path(value):
    try:  # ansible-core 2.19 data tagging records where each inventory value came from
        from ansible._internal._datatag._tags import Origin  # pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover - other ansible-core lines
        return None
    origin = Origin.get_tag(value)
    return getattr(origin, "path", None) if origin else None


def _is_vault_file(path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(14) == b"$ANSIBLE_VAULT"
    except OSError:
        return False
