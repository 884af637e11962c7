"""Analyses of a lowered graph. They return typed ``*Info`` results and never mutate.

* ``KernelInfo``: the sparsity of one binary layer, kernel by kernel (a kernel is ``b[o, c]``,
  the kh×kw taps one output channel reads from one input channel): zero kernels cost nothing,
  one-hot kernels are a shifted read, dense ones need AND-popcount (DESIGN §2.4).
* ``WidthInfo``: proven bounds of T, S and the threshold / output plane ``t*T + s*S + c``;
  ``check_widths`` refuses a graph whose plane could leave int64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.types import Kind, TensorType


@dataclass(frozen=True, slots=True)
class KernelInfo:
    kernels: int
    zero: int
    one_hot: int
    dense: int
    beta_weights: int
    weights: int

    @property
    def beta_share(self) -> float:
        return self.beta_weights / self.weights

    @staticmethod
    def of(weight: np.ndarray) -> KernelInfo:
        o, c = weight.shape[:2]
        per_kernel = weight.reshape(o * c, -1).sum(axis=1)
        return KernelInfo(
            kernels=o * c,
            zero=int((per_kernel == 0).sum()),
            one_hot=int((per_kernel == 1).sum()),
            dense=int((per_kernel > 1).sum()),
            beta_weights=int(weight.sum()),
            weights=int(weight.size),
        )


@dataclass(frozen=True, slots=True)
class WidthInfo:
    """Bounds (absolute values) for one ``SumConv2d`` and the op that consumes its sums."""

    t_max: int
    s_max: int
    plane_max: int

    @property
    def plane_bits(self) -> int:
        """Bits of a signed integer that holds every value of the plane."""
        return self.plane_max.bit_length() + 1

    @property
    def sums_bits(self) -> int:
        return max(self.t_max, self.s_max).bit_length() + 1


class WidthError(ValueError):
    """A plane could overflow int64."""


def widths(conv: O.SumConv2d, src: TensorType, plane: O.Threshold | O.OutputAffine) -> WidthInfo:
    mag = src.magnitude
    o = conv.weight.shape[0]
    taps = int(np.prod(conv.weight.shape[1:]))
    nnz = conv.weight.reshape(o, -1).sum(axis=1)
    t_max = taps * mag
    bound = 0
    for k in range(o):
        c = int(plane.c[k]) if isinstance(plane, O.Threshold) else 0
        s_k = int(nnz[k]) * mag
        bound = max(bound, abs(int(plane.t[k])) * t_max + abs(int(plane.s[k])) * s_k + abs(c))
    return WidthInfo(t_max=t_max, s_max=int(nnz.max(initial=0)) * mag, plane_max=bound)


def layer_widths(graph: Graph) -> dict[str, WidthInfo]:
    """``WidthInfo`` of every ``SumConv2d`` by layer name; raises ``WidthError`` past int64."""
    out: dict[str, WidthInfo] = {}
    ops, ins = graph.ops, graph.input_types()
    for i, op in enumerate(ops):
        if isinstance(op, O.SumConv2d):
            nxt = ops[i + 1]
            assert isinstance(nxt, O.Threshold | O.OutputAffine)
            info = widths(op, ins[i], nxt)
            if info.plane_bits > 63:
                raise WidthError(
                    f"layer '{op.name}': its accumulator needs {info.plane_bits} bits, more than"
                    " int64 holds"
                )
            out[op.name] = info
    return out


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One row of ``bnc inspect``."""

    name: str
    op: str
    in_type: TensorType
    out_type: TensorType
    operand_bits: str
    kernels: KernelInfo | None
    macs: int
    weight_bytes: int
    acc_bits: int


def layer_table(graph: Graph) -> list[LayerInfo]:
    rows: list[LayerInfo] = []
    ins, outs = graph.input_types(), graph.types()
    plane = layer_widths(graph)
    for i, op in enumerate(graph.ops):
        if isinstance(op, O.Threshold | O.OutputAffine | O.Flatten):
            continue  # shown with their SumConv2d / as a reshape
        t_in = ins[i]
        t_out = outs[i + 1] if isinstance(op, O.SumConv2d) else outs[i]
        kernels, macs, wbytes, acc = None, 0, 0, 0
        bits = "-"
        if isinstance(op, O.SumConv2d):
            kernels = KernelInfo.of(op.weight)
            _, oh, ow = t_out.shape
            macs = int(op.weight.size) * oh * ow
            wbytes = (int(op.weight.size) + 7) // 8
            acc = plane[op.name].plane_bits
            width = (t_in.hi - t_in.lo).bit_length() if t_in.kind is Kind.INT else 1
            bits = f"{width}x1"
        rows.append(LayerInfo(op.name, op.opname, t_in, t_out, bits, kernels, macs, wbytes, acc))
    return rows
