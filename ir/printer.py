"""A deterministic text form of a graph, for golden tests and ``--dump-ir``."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from bnc.ir.graph import INPUT, Graph


def _value(v: object) -> str:
    if isinstance(v, np.ndarray):
        if v.size <= 8 and v.ndim <= 1:
            items = ", ".join(repr(x.item()) for x in v)
            return f"[{items}]"
        digest = hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:12]
        shape = "x".join(str(d) for d in v.shape)
        return f"{v.dtype}<{shape}>#{digest}"
    return repr(v)


QUIET = {
    "Sign": {"threshold"},
    "Quantize": {"thresholds"},
    "QuantizeInput": {"zero_point", "mul", "add"},
}
"""Optional fields printed only where they differ from their default (fields added after the
golden dumps were written)."""


def _is_default(op: object, f: dataclasses.Field, value: object) -> bool:
    quiet = QUIET.get(type(op).__name__, set())
    return f.name in quiet and (value is None or (f.default is not None and value == f.default))


def dump(graph: Graph) -> str:
    """One line per node: ``%3 = Op 'layer'(%1, %2) field=value ... : type``."""
    g = graph.canonical()
    lines = [f"{INPUT} : {g.input}"]
    for node in g.nodes:
        op = node.op
        fields = [
            f"{f.name}={_value(getattr(op, f.name))}"
            for f in dataclasses.fields(op)
            if f.name != "name" and not _is_default(op, f, getattr(op, f.name))
        ]
        head = f"{node.out} = {op.opname} '{op.name}'({', '.join(node.args)})"
        lines.append(f"{head} {' '.join(fields)}".rstrip() + f" : {g.types[node.out]}")
    lines.append(f"return {g.result}")
    return "\n".join(lines) + "\n"
