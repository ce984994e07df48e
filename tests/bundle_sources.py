"""Source material for bundle tests and the benchmark: real file formats, made on the spot.

A sharded safetensors model with its index, PEFT LoRA adapters bound to it, a CA
certificate, an eval set, and images in an "upstream" registry."""

import json
import random
import struct
from pathlib import Path

from registry import push_image, write_oci_image


def write_safetensors(path: Path, tensors: dict, seed: int = 0):
    """tensors: {name: number of float16 values}."""
    rng = random.Random(seed)
    header, chunks, offset = {}, [], 0
    for name, count in tensors.items():
        data = rng.randbytes(count * 2)
        header[name] = {"dtype": "F16", "shape": [count], "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        chunks.append(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        for chunk in chunks:
            handle.write(chunk)


def write_model(folder: Path, shards: int = 3, values_per_shard: int = 200_000, seed: int = 0):
    weight_map = {}
    for index in range(shards):
        name = "model-%05d-of-%05d.safetensors" % (index + 1, shards)
        tensor = "model.layers.%d.mlp.weight" % index
        write_safetensors(folder / name, {tensor: values_per_shard}, seed + index)
        weight_map[tensor] = name
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"model_type": "tiny", "num_hidden_layers": shards}))
    return folder


def write_adapter(folder: Path, base: str, rank: int = 8, seed: int = 0):
    write_safetensors(folder / "adapter_model.safetensors",
                      {"base_model.model.layers.0.self_attn.q_proj.lora_A.weight": rank * 64,
                       "base_model.model.layers.0.self_attn.q_proj.lora_B.weight": rank * 64}, seed)
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": base, "r": rank, "lora_alpha": 2 * rank,
        "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}))
    return folder


def make_sources(root: Path, upstream, image_bytes=(150_000, 250_000)):
    """Everything a bundle of site 'testsite' carries; returns the kitchen_bundle parts."""
    images = []
    for index, size in enumerate(image_bytes):
        layout = root / "layouts" / ("app%d" % index)
        write_oci_image(layout, "1.0", {"etc/app": b"app %d" % index}, random_bytes=size, seed=index)
        push_image(upstream, layout, "1.0", "vendor/app%d" % index)
        images.append({"name": "app%d" % index, "source": "docker://%s/vendor/app%d:1.0" % (upstream.host, index),
                       "repository": "kitchen/app%d" % index, "tag": "1.0",
                       "mirror_of": "%s/vendor/app%d" % (upstream.host, index)})
    write_model(root / "models" / "tiny-base")
    adapters = []
    for flavour, seed in (("helpdesk", 1), ("summarise", 2)):
        path = write_adapter(root / "adapters" / flavour / "1.0.0", "tiny-base", seed=seed)
        adapters.append({"name": flavour, "version": "1.0.0", "path": str(path)})
    (root / "eval").mkdir(parents=True, exist_ok=True)
    (root / "eval" / "helpdesk.jsonl").write_text('{"prompt": "reset my password", "expect": ["password"]}\n')
    return {
        "images": images,
        "models": [{"name": "tiny-base", "path": str(root / "models" / "tiny-base")}],
        "adapters": adapters,
        "eval_sets": [{"name": "helpdesk", "path": str(root / "eval" / "helpdesk.jsonl")}],
    }
