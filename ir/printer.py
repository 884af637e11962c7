"""A deterministic text form of a graph, for golden tests and ``--dump-ir``."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from bnc.ir.graph import Graph


def _value(v: object) -> str:
    if isinstance(v, np.ndarray):
        if v.size <= 8 and v.ndim <= 1:
            items = ", ".join(repr(x.item()) for x in v)
            return f"[{items}]"
        digest = hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:12]
        shape = "x".join(str(d) for d in v.shape)
        return f"{v.dtype}<{shape}>#{digest}"
    return repr(v)


def dump(graph: Graph) -> str:
    lines = [f"input : {graph.input}"]
    for i, (op, t) in enumerate(zip(graph.ops, graph.types(), strict=True)):
        fields = [
            f"{f.name}={_value(getattr(op, f.name))}"
            for f in dataclasses.fields(op)
            if f.name != "name"
        ]
        lines.append(f"%{i} = {op.opname} '{op.name}' {' '.join(fields)} : {t}".rstrip())
    return "\n".join(lines) + "\n"
