# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""LoRA adapters (PEFT folders) on a served base model: the compatibility gate, and the
GGUF form llama.cpp loads.

The gate reads only headers (adapter_config.json, the safetensors header, the base model's
GGUF or safetensors tensor table), so a hundred adapters are checked in well under a second.
What vLLM refuses at load time is refused here first, with the flavour, version and reason:
another base model, a rank above --max-lora-rank, DoRA, modules_to_save, a target module the
base model does not have, a tensor whose shape does not fit, a file that differs from the bundle.
"""

from __future__ import annotations

import json
import os
import re
import struct

from ansible_collections.privateai.kitchen.plugins.module_utils.files import sha256_file as _sha256_and_size

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
GGUF_ADAPTER = "adapter.gguf"

# PEFT module name -> llama.cpp tensor of the same projection (llama-like architectures,
# Gemma 3 included: convert_hf_to_gguf.py names them so and permutes none of them).
GGUF_PROJECTIONS = {
    "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
    "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
}
_PEFT_TENSOR = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.([a-z_]+)\.lora_([AB])\.weight$")
_HF_TENSOR = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.([a-z_]+)\.weight$")
_GGUF_TENSOR = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.weight$")


def sha256_file(path):
    return _sha256_and_size(path)[0]


class AdapterError(Exception):
    """An adapter or base model that cannot be read at all."""


def safetensors_header(path):
    """{tensor name: {dtype, shape, data_offsets}} from a safetensors file's JSON header."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 * 1024 * 1024:
                raise AdapterError("%s: header of %d bytes is not a safetensors header" % (path, length))
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError) as exc:
        raise AdapterError("%s: not a readable safetensors file (%s)" % (path, exc)) from None
    header.pop("__metadata__", None)
    return header


class BaseModel:
    """The projections of a base model: {(layer, peft module): (in_features, out_features)}."""

    def __init__(self, name, accepted_names, projections, sha256s, architecture=""):
        self.name = name
        self.accepted_names = [n for n in accepted_names if n]
        self.projections = projections
        self.sha256s = sha256s
        self.architecture = architecture

    @property
    def modules(self):
        return sorted({module for _, module in self.projections})

    @classmethod
    def from_files(cls, name, accepted_names, paths, sha256s=None):
        """paths: the model's files (GGUF, or safetensors shards)."""
        projections, architecture = {}, ""
        for path in paths:
            if path.endswith(".gguf"):
                architecture = _gguf_projections(path, projections)
            elif path.endswith(".safetensors"):
                for tensor, facts in safetensors_header(path).items():
                    match = _HF_TENSOR.search(tensor)
                    if match and len(facts.get("shape", [])) == 2:
                        out_features, in_features = facts["shape"]
                        projections[(int(match.group(1)), match.group(2))] = (in_features, out_features)
        if not projections:
            raise AdapterError("base model %s: no projection weights found in %s" % (name, ", ".join(paths) or "no files"))
        return cls(name, accepted_names, projections, sha256s or {}, architecture)


_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def _gguf_projections(path, projections):
    """Fill projections from a GGUF file's tensor table; returns general.architecture.
    Read here rather than with gguf.GGUFReader, which maps every tokenizer entry into numpy
    (17 s for Gemma 3's 262k-token vocabulary; this takes a fraction of a second)."""
    to_peft = {v: k for k, v in GGUF_PROJECTIONS.items()}
    try:
        with open(path, "rb") as handle:
            data = handle.read(64 * 1024 * 1024)
    except OSError as exc:
        raise AdapterError("%s: not readable (%s)" % (path, exc)) from None
    if data[:4] != b"GGUF":
        raise AdapterError("%s: not a GGUF file" % path)
    offset = 8
    architecture = ""

    def take(fmt):
        nonlocal offset
        value = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return value[0] if len(value) == 1 else value

    def string():
        nonlocal offset
        length = take("Q")
        offset += length
        return data[offset - length:offset].decode("utf-8", "replace")

    def skip(kind):
        nonlocal offset
        if kind == 8:
            string()
        elif kind == 9:
            item_kind, count = take("I"), take("Q")
            if item_kind in _GGUF_SCALARS:
                offset += count * struct.calcsize("<" + _GGUF_SCALARS[item_kind])
            else:
                for _ in range(count):
                    skip(item_kind)
        else:
            offset += struct.calcsize("<" + _GGUF_SCALARS[kind])

    try:
        tensors, fields = take("Q"), take("Q")
        for _ in range(fields):
            key, kind = string(), take("I")
            if key == "general.architecture" and kind == 8:
                architecture = string()
            else:
                skip(kind)
        for _ in range(tensors):
            name, dims = string(), take("I")
            shape = [take("Q") for _ in range(dims)]
            take("I")
            take("Q")
            match = _GGUF_TENSOR.match(name)
            if match and match.group(2) in to_peft and dims == 2:
                # GGUF lists ne[0] (the input features) first.
                projections[(int(match.group(1)), to_peft[match.group(2)])] = (shape[0], shape[1])
    except (struct.error, KeyError, UnicodeDecodeError) as exc:
        raise AdapterError("%s: GGUF header not readable (%s)" % (path, exc)) from None
    return architecture


def read_config(directory):
    path = os.path.join(directory, ADAPTER_CONFIG)
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    if not isinstance(config, dict):
        raise ValueError("%s is not a JSON object" % ADAPTER_CONFIG)
    return config


def _ranks(config):
    return [config.get("r")] + list((config.get("rank_pattern") or {}).values())


def check_adapter(directory, base, max_rank, expected_files=None):
    """The reasons an adapter folder cannot be served on base (an empty list: it can).
    expected_files: {file name: sha256} the bundle recorded."""
    reasons = []
    for expected, sha256 in sorted((expected_files or {}).items()):
        path = os.path.join(directory, expected)
        if not os.path.isfile(path):
            reasons.append("%s is missing" % expected)
        elif sha256_file(path) != sha256:
            reasons.append("%s differs from the bundle (sha256 %s expected)" % (expected, sha256))
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not os.path.isfile(os.path.join(directory, required)) and required not in (expected_files or {}):
            reasons.append("%s is missing" % required)
    if reasons:
        return reasons
    try:
        config = read_config(directory)
    except (OSError, ValueError) as exc:
        return ["%s is not readable JSON (%s)" % (ADAPTER_CONFIG, exc)]
    if config.get("peft_type", "LORA") != "LORA":
        reasons.append("peft_type is %r, only LORA is served" % config.get("peft_type"))
    declared_base = config.get("base_model_name_or_path")
    if base.accepted_names and declared_base not in base.accepted_names:
        reasons.append("base_model_name_or_path is %r, the site serves %s as %s"
                       % (declared_base, base.name, " or ".join(repr(n) for n in base.accepted_names)))
    for rank in _ranks(config):
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            reasons.append("r is %r, expected a positive integer" % (rank,))
        elif rank > max_rank:
            reasons.append("r is %d, above the site's max_lora_rank %d" % (rank, max_rank))
    if config.get("use_dora"):
        reasons.append("use_dora is true: DoRA adapters are not served by vLLM")
    if config.get("modules_to_save"):
        reasons.append("modules_to_save is %r: vLLM serves only the LoRA matrices" % (config["modules_to_save"],))
    targets = config.get("target_modules")
    if isinstance(targets, list):
        missing = sorted(set(targets) - set(base.modules))
        if missing:
            reasons.append("target_modules %s are not projections of %s (it has %s)"
                           % (", ".join(missing), base.name, ", ".join(base.modules)))
    elif not isinstance(targets, str) or not targets:
        reasons.append("target_modules is %r, expected a list of module names" % (targets,))
    try:
        header = safetensors_header(os.path.join(directory, ADAPTER_WEIGHTS))
    except AdapterError as exc:
        return reasons + [str(exc)]
    reasons.extend(_check_tensors(header, base, config))
    return reasons


def _check_tensors(header, base, config):
    reasons, ranks, seen, misfits, absent = [], {}, 0, {}, {}
    for tensor, facts in sorted(header.items()):
        match = _PEFT_TENSOR.search(tensor)
        if not match:
            reasons.append("tensor %s is not a LoRA matrix of a layer projection" % tensor)
            continue
        layer, module, side = int(match.group(1)), match.group(2), match.group(3)
        seen += 1
        features = base.projections.get((layer, module))
        if features is None:
            absent.setdefault(module, set()).add(layer)
            continue
        shape = facts.get("shape", [])
        in_features, out_features = features
        if len(shape) != 2:
            reasons.append("tensor %s has shape %s, expected two dimensions" % (tensor, shape))
            continue
        rank = shape[0] if side == "A" else shape[1]
        fitting = shape[1] == in_features if side == "A" else shape[0] == out_features
        if not fitting:
            expected = "[r, %d]" % in_features if side == "A" else "[%d, r]" % out_features
            misfits.setdefault((module, side, str(shape), expected), []).append(layer)
        ranks.setdefault((layer, module), set()).add(rank)
    layers_of = {}
    for layer, module in base.projections:
        layers_of.setdefault(module, set()).add(layer)
    for module, layers in sorted(absent.items()):
        have = sorted(layers_of.get(module, ()))
        reasons.append("%s in layer(s) %s: %s has %s" % (
            module, _span(layers), base.name, ("it in layers %s" % _span(have)) if have else "no such projection"))
    for (module, side, shape, expected), layers in sorted(misfits.items()):
        reasons.append("%s lora_%s has shape %s in %d layer(s), %s of %s needs %s"
                       % (module, side, shape, len(layers), module, base.name, expected))
    for (layer, module), found in sorted(ranks.items()):
        if len(found) != 1:
            reasons.append("layer %d %s: lora_A and lora_B disagree on the rank (%s)" % (layer, module, sorted(found)))
    if not seen:
        reasons.append("%s holds no LoRA matrices" % ADAPTER_WEIGHTS)
    return reasons[:8] + (["... and %d more" % (len(reasons) - 8)] if len(reasons) > 8 else [])


def _span(numbers):
    numbers = sorted(numbers)
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 1:
        return "%d-%d" % (numbers[0], numbers[-1])
    return ", ".join(str(n) for n in numbers)


def to_gguf(directory, target, architecture):
    """Write the adapter as a llama.cpp LoRA GGUF (general.type adapter). Returns True when the
    file was written, False when an identical file was already there."""
    import gguf
    import numpy
    from safetensors.numpy import load_file

    config = read_config(directory)
    if config.get("alpha_pattern"):
        raise AdapterError("alpha_pattern: llama.cpp applies one alpha per adapter")
    rank = config["r"]
    alpha = float(config.get("lora_alpha") or rank)
    # llama.cpp scales by alpha / r; rsLoRA scales by alpha / sqrt(r).
    if config.get("use_rslora"):
        alpha = alpha * rank ** 0.5
    tensors = load_file(os.path.join(directory, ADAPTER_WEIGHTS))
    partial = target + ".partial"
    writer = gguf.GGUFWriter(partial, architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name in sorted(tensors):
        match = _PEFT_TENSOR.search(name)
        gguf_name = "blk.%s.%s.weight.lora_%s" % (match.group(1), GGUF_PROJECTIONS[match.group(2)], match.group(3).lower())
        # Same layout as PEFT: lora_a [r, in] is ne [in, r], lora_b [out, r] is ne [r, out].
        writer.add_tensor(gguf_name, numpy.ascontiguousarray(tensors[name], dtype=numpy.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if os.path.isfile(target) and sha256_file(target) == sha256_file(partial):
        os.unlink(partial)
        return False
    os.replace(partial, target)
    return True
