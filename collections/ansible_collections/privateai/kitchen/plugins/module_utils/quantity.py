# -*- coding: utf-8 -*-
# Copyright: Private AI Kitchen contributors
# Apache License 2.0 (see LICENSE)
"""Kubernetes quantities: the one grammar the site contract, the bundle and the single host's
containers read sizes and CPUs with, so what preflight accepts every later step understands.

Sizes (storage, memory, volumes) need a unit: a bare '40' is 40 bytes to Kubernetes, which is
never what a site means by a model volume. A number (not a string) is a count of bytes.
CPUs are cores ('2', '0.5') or millicores ('500m').
"""

from __future__ import annotations

import re
from decimal import Decimal

BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
DECIMAL = {"k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)(%s)$" % "|".join(list(BINARY) + list(DECIMAL)))
_CPU = re.compile(r"^(\d+(?:\.\d{1,3})?|\d+m)$")


class QuantityError(ValueError):
    """A value that is not a quantity; the message names where it came from."""


def is_size(value) -> bool:
    return isinstance(value, str) and bool(_SIZE.match(value))


def is_cpu(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, str) and bool(_CPU.match(value))


def to_bytes(value, label="size") -> int:
    """Bytes of a size like 25Gi, 1.5Gi or 500M (or a number of bytes)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        raise QuantityError("%s: %r is not a size like 25Gi, 1.5Gi or 500M" % (label, value))
    unit = BINARY.get(match.group(2)) or DECIMAL[match.group(2)]
    return int(Decimal(match.group(1)) * unit)


def to_cores(value, label="cpu") -> float:
    """Cores of a CPU quantity: '2' is 2.0, '500m' is 0.5."""
    if not is_cpu(value):
        raise QuantityError("%s: %r is not a CPU quantity like 2, 0.5 or 500m" % (label, value))
    if isinstance(value, str) and value.endswith("m"):
        return int(value[:-1]) / 1000
    return float(value)
