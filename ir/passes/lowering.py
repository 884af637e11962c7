"""Passes from the import-level graph to the integer-only graph (DESIGN §2.4–2.8).

Each pass is a frozen dataclass with a ``name`` and one ``apply(graph) -> Graph``; it returns a
new, verified graph and never mutates its input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.types import Kind

# Precision of the integer planes: each channel's largest coefficient is scaled by a power of
# two into [2^(P-1), 2^P) and rounded. The real test and the integer one can disagree only where
# |t*T + s*S + c| < (|T| + |S| + 1) * 2^-P * max(|t|, |s|, |c|), i.e. where the pre-activation
# sits within that margin of the threshold. P is as large as int64 allows for the layer's sums
# (``plane_precision``), at most MAX_PRECISION; the output layer keeps PRECISION bits.
PRECISION = 24
MAX_PRECISION = 40
DOUBLE_EXACT = 52


def plane_precision(t_max: int, limit: int = 62) -> int:
    """The largest P with ``2^P * (2 * t_max + 1) < 2^limit`` (|S| <= |T|'s bound), capped.

    Planes over bits use ``limit = DOUBLE_EXACT``: every partial sum of the plane then stays
    below 2^53, so a backend may evaluate it exactly in IEEE double (vector units without
    64-bit integer multiplies do)."""
    return max(PRECISION, min(MAX_PRECISION, limit - (2 * t_max + 1).bit_length()))


def _fixed(values: list[np.ndarray], precision: int = PRECISION) -> tuple[list[np.ndarray], int]:
    """Scale a channel's coefficients by one power of two and round them to integers."""
    m = max(float(np.max(np.abs(v))) for v in values)
    if m == 0.0 or not math.isfinite(m):
        return [np.zeros_like(v, dtype=np.int64) for v in values], 0
    shift = precision - math.frexp(m)[1]
    return [np.rint(np.ldexp(v, shift)).astype(np.int64) for v in values], shift


@dataclass(frozen=True)
class LinearToConv:
    """``[Flatten] BinaryLinear`` becomes a ``BinaryConv2d`` whose kernel covers the whole
    (C, H, W) input: PyTorch's flatten order is exactly the kernel's (c, y, x) order."""

    name: str = "linear-to-conv"

    def apply(self, graph: Graph) -> Graph:
        out: list[O.Op] = []
        in_types = graph.input_types()
        for i, op in enumerate(graph.ops):
            if isinstance(op, O.BinaryLinear):
                src = in_types[i]
                if out and isinstance(out[-1], O.Flatten):
                    src = in_types[i - 1]
                    out.pop()
                c, h, w = src.shape
                weight = op.weight.reshape(op.weight.shape[0], c, h, w)
                out.append(O.BinaryConv2d(op.name, weight, op.alpha, op.beta, op.bias))
            else:
                out.append(op)
        return graph.replace(out)


@dataclass(frozen=True)
class PushMaxPoolPastThreshold:
    """``MaxPool2d [BatchNorm]* Sign`` on real values becomes ``[BatchNorm]* Sign BitMaxPool2d``.

    Exact: BatchNorm is monotone per channel, so the max of the pre-activations maps to the OR
    of the bits where it increases and to their AND where it decreases (gamma < 0).
    """

    name: str = "push-max-pool-past-threshold"

    def apply(self, graph: Graph) -> Graph:
        ops = list(graph.ops)
        types = graph.input_types()
        i = 0
        while i < len(ops):
            op = ops[i]
            if isinstance(op, O.MaxPool2d) and types[i].kind is Kind.REAL:
                j = i + 1
                flip = np.zeros(types[i].channels, dtype=bool)
                while j < len(ops) and isinstance(ops[j], O.BatchNorm):
                    flip ^= ops[j].gamma < 0
                    j += 1
                if j < len(ops) and isinstance(ops[j], O.Sign):
                    pool = O.BitMaxPool2d(op.name, op.kernel, op.stride, op.padding, flip)
                    ops[i : j + 1] = [*ops[i + 1 : j + 1], pool]
                    types = Graph(graph.input, tuple(ops)).input_types()
            i += 1
        return graph.replace(ops)


@dataclass(frozen=True)
class LowerMaxPool:
    """``MaxPool2d`` on bits is an OR: ``BitMaxPool2d`` with no AND channels."""

    name: str = "lower-max-pool"

    def apply(self, graph: Graph) -> Graph:
        out: list[O.Op] = []
        for op, t in zip(graph.ops, graph.input_types(), strict=True):
            if isinstance(op, O.MaxPool2d) and t.kind is Kind.BIT:
                mask = np.zeros(t.channels, dtype=bool)
                op = O.BitMaxPool2d(op.name, op.kernel, op.stride, op.padding, mask)
            out.append(op)
        return graph.replace(out)


@dataclass(frozen=True)
class DecomposeGdq:
    """``x ⊛ w = alpha * (x ⊛ 1) + (beta - alpha) * (x ⊛ b)``: a ``SumConv2d`` computing the
    shared all-ones term T and the sparse term S, then a real ``Affine`` (the input's scale
    folded into its coefficients)."""

    name: str = "decompose-gdq"

    def apply(self, graph: Graph) -> Graph:
        out: list[O.Op] = []
        for op, t in zip(graph.ops, graph.input_types(), strict=True):
            if isinstance(op, O.BinaryConv2d):
                out.append(O.SumConv2d(op.name, op.weight, op.stride, op.padding))
                a = op.alpha * t.scale
                d = (op.beta - op.alpha) * t.scale
                out.append(O.Affine(op.name, a, d, op.bias.astype(np.float64)))
            else:
                out.append(op)
        return graph.replace(out)


@dataclass(frozen=True)
class FoldBatchNorm:
    """``Affine BatchNorm`` becomes one ``Affine`` (float64)."""

    name: str = "fold-batch-norm"

    def apply(self, graph: Graph) -> Graph:
        out: list[O.Op] = []
        for op in graph.ops:
            if isinstance(op, O.BatchNorm) and out and isinstance(out[-1], O.Affine):
                prev = out.pop()
                k = op.gamma / np.sqrt(op.var + op.eps)
                c = k * (prev.c - op.mean) + op.beta
                op = O.Affine(f"{prev.name}+{op.name}", k * prev.t, k * prev.s, c)
            out.append(op)
        return graph.replace(out)


@dataclass(frozen=True)
class FoldSign:
    """``Affine Sign`` becomes an integer ``Threshold``: per channel the coefficients are scaled
    by one power of two (so the test's direction and ``sign(0) = +1`` are kept) and rounded
    to ``plane_precision`` bits (24 to 40, as the layer's sums allow). ``gamma < 0`` flips
    the test through the coefficients' signs and ``gamma = 0`` leaves only the constant."""

    name: str = "fold-sign"

    def apply(self, graph: Graph) -> Graph:
        out: list[O.Op] = []
        ins = graph.input_types()
        for i, op in enumerate(graph.ops):
            if isinstance(op, O.Sign) and out and isinstance(out[-1], O.Affine):
                prev = out.pop()
                conv = graph.ops[i - 2]
                assert isinstance(conv, O.SumConv2d)
                t_max = int(np.prod(conv.weight.shape[1:])) * ins[i - 2].magnitude
                over_bits = ins[i - 2].kind is Kind.BIT
                bits = plane_precision(t_max, DOUBLE_EXACT if over_bits else 62)
                cols = [
                    _fixed([prev.t[o : o + 1], prev.s[o : o + 1], prev.c[o : o + 1]], bits)[0]
                    for o in range(prev.t.shape[0])
                ]
                t, s, c = (np.concatenate([col[k] for col in cols]) for k in range(3))
                op = O.Threshold(f"{prev.name}+{op.name}", t, s, c)
            out.append(op)
        return graph.replace(out)


@dataclass(frozen=True)
class QuantizeOutput:
    """The last ``Affine`` becomes ``OutputAffine``: per channel ``t`` and ``s`` in fixed point
    with ``PRECISION`` bits, ``scale = 2^-shift`` and ``bias = c``."""

    name: str = "quantize-output"

    def apply(self, graph: Graph) -> Graph:
        ops = list(graph.ops)
        idx = [i for i, op in enumerate(ops) if isinstance(op, O.Affine)]
        if not idx or any(not isinstance(op, O.Flatten) for op in ops[idx[-1] + 1 :]):
            return graph
        i = idx[-1]
        aff = ops[i]
        assert isinstance(aff, O.Affine)
        ts, ss, scales = [], [], []
        for o in range(aff.t.shape[0]):
            (t, s), shift = _fixed([aff.t[o : o + 1], aff.s[o : o + 1]])
            ts.append(t)
            ss.append(s)
            scales.append(math.ldexp(1.0, -shift))
        ops[i] = O.OutputAffine(
            aff.name, np.concatenate(ts), np.concatenate(ss), np.array(scales), aff.c.copy()
        )
        return graph.replace(ops)
