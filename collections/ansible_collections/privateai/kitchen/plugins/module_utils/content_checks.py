# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Content checks that catch a broken model, adapter or certificate before it is carried
across the gap (connected side) or served (closed side)."""

from __future__ import annotations

import datetime
import json
import os
import re
import struct

from ansible_collections.privateai.kitchen.plugins.module_utils.files import KitchenError

def check_safetensors(path):
    """A safetensors file's header must describe exactly the bytes that follow it."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise KitchenError("%s: not a safetensors file (%d bytes)" % (path, size))
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, 100 * 1024 * 1024):
            raise KitchenError("%s: safetensors header length %d does not fit the file (%d bytes)"
                              % (path, header_len, size))
        try:
            header = json.loads(handle.read(header_len))
        except ValueError as exc:
            raise KitchenError("%s: safetensors header is not JSON: %s" % (path, exc)) from None
    end = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = tensor["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise KitchenError("%s: tensor %r has no data_offsets" % (path, name)) from None
        end = max(end, stop)
    expected = 8 + header_len + end
    if expected != size:
        raise KitchenError("%s: safetensors header describes %d bytes but the file has %d (%s)"
                          % (path, expected, size, "truncated" if size < expected else "trailing data"))
    return {name: tensor for name, tensor in header.items() if name != "__metadata__"}


def check_gguf(path):
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise KitchenError("%s: not a GGUF file (magic %r)" % (path, magic))


def check_model_dir(name, directory, files):
    """Content checks of a base model's files (relative names); returns tensor names found."""
    tensors = set()
    for rel in files:
        path = os.path.join(directory, rel)
        if rel.endswith(".safetensors"):
            tensors.update(check_safetensors(path))
        elif rel.endswith(".gguf"):
            check_gguf(path)
    for rel in files:
        if not rel.endswith(".safetensors.index.json"):
            continue
        with open(os.path.join(directory, rel), encoding="utf-8") as handle:
            weight_map = json.load(handle).get("weight_map") or {}
        missing = sorted(set(weight_map.values()) - set(files))
        if missing:
            raise KitchenError("model %s: %s names shards that are not there: %s"
                              % (name, rel, ", ".join(missing)))
    shards = sorted(f for f in files if re.search(r"-\d{5}-of-\d{5}\.safetensors$", f))
    if shards and not any(f.endswith(".safetensors.index.json") for f in files):
        raise KitchenError("model %s: sharded weights (%s) but no model.safetensors.index.json: servers cannot "
                          "load them" % (name, ", ".join(shards)))
    if not any(f.endswith((".safetensors", ".gguf", ".bin")) for f in files):
        raise KitchenError("model %s: no weights (*.safetensors, *.gguf) in %s" % (name, directory))
    return tensors


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def read_adapter(label, directory):
    """The PEFT facts of a LoRA adapter folder: rank, alpha, target modules, base model."""
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not os.path.isfile(os.path.join(directory, required)):
            raise KitchenError("adapter %s: %s is missing in %s" % (label, required, directory))
    try:
        with open(os.path.join(directory, ADAPTER_CONFIG), encoding="utf-8") as handle:
            config = json.load(handle)
    except ValueError as exc:
        raise KitchenError("adapter %s: %s is not JSON: %s" % (label, ADAPTER_CONFIG, exc)) from None
    if config.get("peft_type", "LORA") != "LORA":
        raise KitchenError("adapter %s: peft_type is %r, expected 'LORA'" % (label, config.get("peft_type")))
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise KitchenError("adapter %s: %s r is %r, expected a positive integer" % (label, ADAPTER_CONFIG, rank))
    targets = config.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]
    if not targets:
        raise KitchenError("adapter %s: %s has no target_modules" % (label, ADAPTER_CONFIG))
    check_safetensors(os.path.join(directory, ADAPTER_WEIGHTS))
    return {
        "rank": rank,
        "alpha": config.get("lora_alpha"),
        "target_modules": sorted(targets),
        "base_model_name_or_path": config.get("base_model_name_or_path"),
        "use_dora": bool(config.get("use_dora")),
        "modules_to_save": config.get("modules_to_save"),
    }


def certificate_facts(label, path, now=None):
    """Subject, SHA-256 fingerprint and validity of every certificate in a PEM file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    with open(path, "rb") as handle:
        data = handle.read()
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise KitchenError("CA %s: %s holds no PEM certificate: %s" % (label, path, exc)) from None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    facts = []
    for cert in certificates:
        not_after = cert.not_valid_after_utc
        facts.append({
            "subject": cert.subject.rfc4514_string(),
            "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
            "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
        if not_after < now:
            raise KitchenError("CA %s: certificate %s in %s expired on %s"
                              % (label, cert.subject.rfc4514_string(), path, facts[-1]["not_after"]))
    return facts
