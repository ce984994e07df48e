# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Site rules of size: what the models ask for must fit the quota of the tenant they are served
in, and the LoRA serving limits must agree with each other and with the flavours served. All
quantities are read with the one parser (module_utils/quantity.py)."""

from __future__ import annotations

from ansible_collections.privateai.kitchen.plugins.module_utils import quantity
from ansible_collections.privateai.kitchen.plugins.module_utils.site_rules import Violation

# Quota key: how it is read, how a total is shown.
_QUOTA = {
    "cpu": (quantity.to_cores, lambda v: "%g CPU" % v),
    "memory": (quantity.to_bytes, lambda v: _size(v) + " of memory"),
    "gpus": (int, lambda v: "%d GPU(s)" % v),
    "storage": (quantity.to_bytes, lambda v: _size(v) + " of volumes"),
    "pvcs": (int, lambda v: "%d volume(s)" % v),
}


def violations(site: dict) -> list[Violation]:
    return quota_fit(site) + lora_limits(site)


def _size(value) -> str:
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if value >= quantity.BINARY[unit]:
            return "%g%s" % (round(value / quantity.BINARY[unit], 2), unit)
    return "%d bytes" % value


def _read(key, value):
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = _QUOTA[key][0](value)
    except (quantity.QuantityError, TypeError, ValueError):
        return None  # reported by the schema
    # A zero size or CPU quantity is the schema's to report (a zero GPU or volume count is valid).
    return None if amount == 0 and key in ("cpu", "memory", "storage") else amount


def _dicts(value):
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def model_needs(model: dict, *, flavoured: bool, adapter_volume) -> dict:
    """What one model server takes from its tenant's quota, by quota key: the resources it
    requests (its limits equal them) and its volumes - the weights PVC and, with flavours, the
    adapter PVC. Only values the site gives count: a role's fallback is not the site's choice."""
    resources = model.get("resources") if isinstance(model.get("resources"), dict) else {}
    needs = {key: _read(key, resources.get(key)) for key in ("cpu", "memory", "gpus")}
    volumes = [model.get("pvc_size")] + ([adapter_volume] if flavoured else [])
    sizes = [_read("storage", size) for size in volumes if size is not None]
    needs["storage"] = sum(s for s in sizes if s is not None) if sizes else None
    needs["pvcs"] = len(volumes)
    return {key: value for key, value in needs.items() if value is not None}


def quota_fit(site: dict) -> list[Violation]:
    """Each tenant's quota against the sum of what the models served in it need."""
    lora = site.get("kitchen_lora") if isinstance(site.get("kitchen_lora"), dict) else {}
    flavoured = {a.get("base_model") for a in _dicts(site.get("kitchen_adapters"))}
    totals: dict = {}  # tenant -> quota key -> [amount, model paths]
    for index, model in enumerate(site.get("kitchen_models") or []):
        if not isinstance(model, dict) or not isinstance(model.get("tenant"), str):
            continue
        needs = model_needs(model, flavoured=model.get("name") in flavoured, adapter_volume=lora.get("pvc_size"))
        for key, amount in needs.items():
            entry = totals.setdefault(model["tenant"], {}).setdefault(key, [0, []])
            entry[0] += amount
            entry[1].append("kitchen_models[%d]" % index)
    out = []
    for index, tenant in enumerate(_dicts(site.get("kitchen_tenants"))):
        quota = tenant.get("quota") if isinstance(tenant.get("quota"), dict) else {}
        for key, (amount, models) in sorted(totals.get(tenant.get("name"), {}).items()):
            limit = _read(key, quota.get(key))
            if limit is not None and amount > limit:
                out.append(Violation("kitchen_tenants[%d].quota.%s" % (index, key), "%r cannot hold the %s that %s need%s" % (
                    quota[key], _QUOTA[key][1](amount), ", ".join(models), "s" if len(models) == 1 else "")))
    return out


def lora_limits(site: dict) -> list[Violation]:
    lora = site.get("kitchen_lora")
    if not isinstance(lora, dict):
        lora = {}
    max_loras, max_cpu = lora.get("max_loras"), lora.get("max_cpu_loras")
    valid = [v for v in (max_loras, max_cpu) if isinstance(v, int) and not isinstance(v, bool)]
    out = []
    if len(valid) == 2 and max_loras > max_cpu:
        out.append(Violation("kitchen_lora.max_cpu_loras", "%d is less than kitchen_lora.max_loras (%d): vLLM caches "
                             "at least the adapters of one batch in CPU memory" % (max_cpu, max_loras)))
    # The flavours in service are loaded at start; vLLM holds max_cpu_loras of them (max_loras
    # when unset), the rest would be evicted and never served.
    holds, which = (max_cpu, "kitchen_lora.max_cpu_loras") if max_cpu in valid else (max_loras, "kitchen_lora.max_loras")
    # Only vLLM (openshift) holds a bounded set; the single host's server loads every version.
    if holds not in valid or site.get("kitchen_platform") != "openshift":
        return out
    served: dict = {}
    for adapter in _dicts(site.get("kitchen_adapters")):
        if isinstance(adapter.get("name"), str):
            served.setdefault(adapter.get("base_model"), []).append(adapter["name"])
    for model, flavours in sorted(served.items(), key=lambda kv: str(kv[0])):
        if len(flavours) > holds:
            out.append(Violation(which, "%d is less than the %d flavours served on %s (%s)" % (
                holds, len(flavours), model, ", ".join(flavours))))
    return out
