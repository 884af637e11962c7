"""``NarrowThresholds``: every single-layer threshold with the fewest-bit coefficients that
decide exactly like the wide ones (``bnc.ir.narrow``), for targets that pay per coefficient
bit (Cortex-M's 32-bit multiplies, the FPGA's threshold units).

The narrowed graph gives the interpreter's answers on every input: ``narrow`` is exact on the
whole box of (T, S) values a layer can reach, borders included. Thresholds over several
layers (residual sums) keep their coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnc.ir import ops as O
from bnc.ir.graph import Graph, Node
from bnc.ir.narrow import narrow
from bnc.ir.rewrite import Builder, rewrite
from bnc.ir.types import Kind


@dataclass(frozen=True)
class NarrowThresholds:
    name: str = "narrow-thresholds"

    def apply(self, graph: Graph) -> Graph:
        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            op = node.op
            if not isinstance(op, O.Threshold) or len(args) != 1:
                return None
            conv = b.producer(args[0])
            assert conv is not None and isinstance(conv.op, O.SumConv2d)
            src = b.types[conv.args[0]]
            # per-tap values: of q - zero_point for codes (what the sums add), 0 for a padded tap
            vlo, vhi = src.value_range
            lo, hi = (-1, 1) if src.kind is Kind.BIT else (min(vlo, 0), max(vhi, 0))
            w = conv.op.weight
            o = w.shape[0]
            n = int(np.prod(w.shape[1:]))
            nnz = w.reshape(o, -1).sum(axis=1)
            trip = [
                narrow(int(op.t[0, k]), int(op.s[0, k]), int(op.c[k]), n, int(nnz[k]), lo, hi)
                for k in range(o)
            ]
            t, s, c = (np.array([[v[i] for v in trip]], dtype=np.int64) for i in range(3))
            return b.emit(O.Threshold(op.name, t, s, c[0]), args)

        return rewrite(graph, rule)
