"""Passes from the import-level graph to the integer-only graph (DESIGN §2.4–2.8).

Each pass is a frozen dataclass with a ``name`` and one ``apply(graph) -> Graph``; it rewrites
by value (``bnc.ir.rewrite``), returns a new, verified graph and never mutates its input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bnc.ir import ops as O
from bnc.ir.graph import Graph, Node
from bnc.ir.rewrite import Builder, Rule, rewrite
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


class FanOutError(ValueError):
    """A real-valued tensor is read by several layers (it would have to be stored)."""


def _single_reader(graph: Graph, value: str, what: str) -> None:
    """Refuse to fold a real value that several layers read: folding would compute its
    sums once per reader, and storing it would need a real-valued (or requantized) tensor."""
    readers = graph.users[value]
    node = graph.producer(value)
    if len(readers) > 1 and node is not None and graph.types[value].kind is Kind.REAL:
        names = ", ".join(f"'{r.op.name}'" for r in readers)
        raise FanOutError(
            f"layer '{node.op.name}' ({node.op.opname}): its real-valued output is read by"
            f" {len(readers)} layers ({names}) and {what}; bnc does not store real tensors:"
            " insert bnc.nn.Sign after it so that they read bits"
        )


@dataclass(frozen=True)
class LinearToConv:
    """``[Flatten] BinaryLinear`` (``QuantLinear``) becomes a ``BinaryConv2d`` (``QuantConv2d``)
    whose kernel covers the whole (C, H, W) input: PyTorch's flatten order is exactly the
    kernel's (c, y, x) order."""

    name: str = "linear-to-conv"

    def apply(self, graph: Graph) -> Graph:
        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            op = node.op
            if not isinstance(op, O.BinaryLinear | O.QuantLinear):
                return None
            src = args[0]
            flat = b.producer(src)
            if flat is not None and isinstance(flat.op, O.Flatten):
                src = flat.args[0]
            c, h, w = b.types[src].shape
            if isinstance(op, O.QuantLinear):
                index = op.index.reshape(op.index.shape[0], c, h, w)
                return b.emit(O.QuantConv2d(op.name, index, op.levels, op.bias), (src,))
            weight = op.weight.reshape(op.weight.shape[0], c, h, w)
            return b.emit(O.BinaryConv2d(op.name, weight, op.alpha, op.beta, op.bias), (src,))

        return rewrite(graph, rule)


@dataclass(frozen=True)
class PushMaxPoolPastThreshold:
    """``MaxPool2d [BatchNorm]* Sign`` on real values becomes ``[BatchNorm]* Sign BitMaxPool2d``
    (and ``Quantize`` likewise).

    Exact: BatchNorm is monotone per channel and Sign and the quantizer are non-decreasing, so
    the max of the pre-activations maps to the max (OR) of the bits or codes where it increases
    and to their min (AND) where it decreases (gamma < 0). Applies where the pool and each
    BatchNorm have the next op as their only reader.
    """

    name: str = "push-max-pool-past-threshold"

    def apply(self, graph: Graph) -> Graph:
        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            if not isinstance(node.op, O.Sign | O.Quantize):
                return None
            if graph.types[node.args[0]].kind is not Kind.REAL:
                return None
            bns: list[O.BatchNorm] = []
            v = node.args[0]
            p = graph.producer(v)
            while p is not None and isinstance(p.op, O.BatchNorm) and len(graph.users[v]) == 1:
                bns.append(p.op)
                v = p.args[0]
                p = graph.producer(v)
            if p is None or not isinstance(p.op, O.MaxPool2d) or len(graph.users[v]) != 1:
                return None
            pool = p.op
            if graph.types[p.args[0]].kind is not Kind.REAL:
                return None
            x = b.map[p.args[0]]
            flip = np.zeros(graph.types[v].channels, dtype=bool)
            for bn in reversed(bns):
                flip ^= bn.gamma < 0
                x = b.emit(bn, (x,))
            x = b.emit(node.op, (x,))
            bit_pool = O.BitMaxPool2d(pool.name, pool.kernel, pool.stride, pool.padding, flip)
            return b.emit(bit_pool, (x,))

        return rewrite(graph, rule)


@dataclass(frozen=True)
class PushThroughConcat:
    """``BatchNorm`` and ``Sign`` of a concat of real branches apply to each branch:
    ``Sign(BN(cat(a, b))) = cat(Sign(BN_a(a)), Sign(BN_b(b)))`` with the BatchNorm's channels
    split by branch, so each branch folds into its own threshold and the cat moves bits."""

    name: str = "push-through-concat"

    def apply(self, graph: Graph) -> Graph:
        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            op = node.op
            cat = b.producer(args[0]) if isinstance(op, O.BatchNorm | O.Sign) else None
            if cat is None or not isinstance(cat.op, O.Concat):
                return None
            if b.types[args[0]].kind is not Kind.REAL or len(graph.users[node.args[0]]) != 1:
                return None
            parts, c0 = [], 0
            for v in cat.args:
                c = b.types[v].channels
                if isinstance(op, O.BatchNorm):
                    cut = slice(c0, c0 + c)
                    part = O.BatchNorm(f"{op.name}[{c0}:{c0 + c}]", op.gamma[cut], op.beta[cut],
                                       op.mean[cut], op.var[cut], op.eps)  # fmt: skip
                else:
                    part = O.Sign(op.name)
                parts.append(b.emit(part, (v,)))
                c0 += c
            return b.emit(cat.op, parts)

        return rewrite(graph, rule)


@dataclass(frozen=True)
class LowerMaxPool:
    """``MaxPool2d`` on bits (an OR) or codes (a max): ``BitMaxPool2d`` with no AND channels."""

    name: str = "lower-max-pool"

    def apply(self, graph: Graph) -> Graph:
        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            op = node.op
            t = b.types[args[0]]
            if not isinstance(op, O.MaxPool2d) or t.kind not in (Kind.BIT, Kind.INT):
                return None
            mask = np.zeros(t.channels, dtype=bool)
            return b.emit(O.BitMaxPool2d(op.name, op.kernel, op.stride, op.padding, mask), args)

        return rewrite(graph, rule)


@dataclass(frozen=True)
class DecomposeGdq:
    """``x ⊛ w = alpha * (x ⊛ 1) + (beta - alpha) * (x ⊛ b)``: a ``SumConv2d`` computing the
    shared all-ones term T and the sparse term S, then a real ``Affine`` (the input's scale
    folded into its coefficients)."""

    name: str = "decompose-gdq"

    def apply(self, graph: Graph) -> Graph:
        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            op = node.op
            if not isinstance(op, O.BinaryConv2d):
                return None
            t = b.types[args[0]]
            sums = b.emit(O.SumConv2d(op.name, op.weight, op.stride, op.padding), args)
            a = (op.alpha * t.scale)[None]
            d = ((op.beta - op.alpha) * t.scale)[None]
            return b.emit(O.Affine(op.name, a, d, op.bias.astype(np.float64)), (sums,))

        return rewrite(graph, rule)


@dataclass(frozen=True)
class FoldAdd:
    """``Add`` of two real branches becomes one ``Affine`` over both branches' (T, S) pairs
    (DESIGN §2.8). A branch is a binary layer's output (after BatchNorm folding) or a tensor
    of bits / codes, read as a 1x1 layer with one-hot kernels (``S[o] = x[o]``, T unused)."""

    name: str = "fold-add"

    def apply(self, graph: Graph) -> Graph:
        return rewrite(graph, self.rule(graph))

    def rule(self, graph: Graph) -> Rule:
        def operand(b: Builder, old: str, new: str, add: O.Add):
            t = b.types[new]
            p = b.producer(new)
            if p is not None and isinstance(p.op, O.Affine):
                _single_reader(graph, old, f"one of them is the add '{add.name}'")
                return p.args, p.op.t, p.op.s, p.op.c
            if t.kind in (Kind.BIT, Kind.INT):
                c = t.channels
                eye = np.eye(c, dtype=bool)[:, :, None, None]
                sums = b.emit(O.SumConv2d(f"{add.name}.shortcut", eye), (new,))
                return (sums,), np.zeros((1, c)), np.full((1, c), t.scale), np.zeros(c)
            return None

        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            if not isinstance(node.op, O.Add):
                return None
            parts = [operand(b, o, n, node.op) for o, n in zip(node.args, args, strict=True)]
            if any(p is None for p in parts):
                return None
            sums = tuple(a for p in parts for a in p[0])
            t = np.concatenate([p[1] for p in parts])
            s = np.concatenate([p[2] for p in parts])
            c = sum(p[3] for p in parts)
            return b.emit(O.Affine(node.op.name, t, s, np.asarray(c, dtype=np.float64)), sums)

        return rule


@dataclass(frozen=True)
class FoldBatchNorm:
    """``Affine BatchNorm`` becomes one ``Affine`` (float64)."""

    name: str = "fold-batch-norm"

    def apply(self, graph: Graph) -> Graph:
        return rewrite(graph, self.rule(graph))

    def rule(self, graph: Graph) -> Rule:
        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            op = node.op
            prev = b.producer(args[0])
            if not isinstance(op, O.BatchNorm) or prev is None:
                return None
            if not isinstance(prev.op, O.Affine):
                return None
            _single_reader(graph, node.args[0], f"one of them is the BatchNorm '{op.name}'")
            aff = prev.op
            k = op.gamma / np.sqrt(op.var + op.eps)
            c = k * (aff.c - op.mean) + op.beta
            folded = O.Affine(f"{aff.name}+{op.name}", k * aff.t, k * aff.s, c)
            return b.emit(folded, prev.args)

        return rule


@dataclass(frozen=True)
class FoldAffine:
    """``FoldBatchNorm`` and ``FoldAdd`` in one walk, so that any nesting of BatchNorms and
    adds (``Sign(BN(BN(conv) + BN(conv)) + x)``) folds into one ``Affine``."""

    name: str = "fold-affine"

    def apply(self, graph: Graph) -> Graph:
        rules = (FoldBatchNorm().rule(graph), FoldAdd().rule(graph))

        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            for r in rules:
                out = r(b, node, args)
                if out is not None:
                    return out
            return None

        return rewrite(graph, rule)


def operand_bounds(b: Builder, sums: tuple[str, ...]) -> tuple[list[int], bool]:
    """Each operand's bound on |T| and |S| (= taps * max|x|), and whether every operand reads
    bits."""
    out, over_bits = [], True
    for v in sums:
        conv = b.producer(v)
        assert conv is not None and isinstance(conv.op, O.SumConv2d)
        src = b.types[conv.args[0]]
        out.append(int(np.prod(conv.op.weight.shape[1:])) * src.magnitude)
        over_bits &= src.kind is Kind.BIT
    return out, over_bits


# The exact form (DESIGN §2.6): a channel's coefficients are small integer multiples of one
# unit when the weight levels are integer multiples of a scale (ternary, k-bit integers, ±s).
# Levels computed in float32 carry a relative error up to 2^-24, so ratios are matched to
# EXACT_TOLERANCE; EXACT_MAX bounds the integers, so that a coincidence of arbitrary reals
# (GDQ's two levels) within the tolerance is negligible.
EXACT_TOLERANCE = 2.0**-21
EXACT_MAX = 1 << 12
_DIVISORS = (1, 2, 3, 4, 6, 8, 12, 16)


def integer_form(values: np.ndarray) -> tuple[np.ndarray, float] | None:
    """``(ints, unit)`` with ``values = unit * ints`` to ``EXACT_TOLERANCE``, or None."""
    nz = np.abs(values[values != 0])
    if nz.size == 0 or not np.isfinite(nz).all():
        return None
    m = float(nz.min())
    if float(nz.max()) > m * EXACT_MAX * _DIVISORS[-1]:
        return None
    for d in _DIVISORS:
        r = values / (m / d)
        ints = np.rint(r)
        if np.abs(ints).max() > EXACT_MAX:
            return None
        if (np.abs(r - ints) <= EXACT_TOLERANCE * np.maximum(1.0, np.abs(r))).all():
            return ints.astype(np.int64), m / d
    return None


def channel_form(
    t: np.ndarray, s: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """One channel's plane ``sum_k t[k]*T_k + s[k]*S_k`` as ``unit * (integer plane)``:
    ``(t', s', unit, exact)``. Exact where ``integer_form`` applies, else fixed point with
    ``bits`` bits (``unit = 2^-shift``)."""
    exact = integer_form(np.concatenate([t, s]))
    if exact is not None:
        ints, unit = exact
        return ints[: len(t)], ints[len(t) :], unit, True
    (ti, si), shift = _fixed([t, s], bits)
    return ti, si, math.ldexp(1.0, -shift), False


def plane_constant(
    c: float, unit: float, t: np.ndarray, s: np.ndarray, bounds: list[int], margin: int = 0
) -> int:
    """``floor(c / unit)``, saturated to ``±(B + margin + 1)`` (B the bound of the integer
    plane ``t, s`` over operands with ``bounds``): past that band every input decides the same
    way, and the constant stays as narrow as the plane."""
    b = sum((abs(int(a)) + abs(int(z))) * m for a, z, m in zip(t, s, bounds, strict=True))
    lim = b + margin + 1
    if abs(c) >= lim * unit:
        return lim if c > 0 else -lim
    return math.floor(c / unit)


@dataclass(frozen=True)
class FoldSign:
    """``Affine Sign`` becomes an integer ``Threshold``. Where the layer's levels make a
    channel's coefficients integer multiples of one unit (``integer_form``), the threshold is
    exact: the integers and ``floor(c / unit)``. Otherwise the coefficients of every operand
    are scaled by one power of two (so the test's direction and ``sign(0) = +1`` are kept) and
    rounded to ``plane_precision`` bits (24 to 40, as the layer's sums allow). ``gamma < 0``
    flips the test through the coefficients' signs and ``gamma = 0`` leaves only the constant.
    A ``Sign`` of codes is the threshold ``q - zero_point >= 0`` of their identity read."""

    name: str = "fold-sign"

    def apply(self, graph: Graph) -> Graph:
        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            if not isinstance(node.op, O.Sign):
                return None
            if b.types[args[0]].kind is Kind.INT:
                c = b.types[args[0]].channels
                eye = np.eye(c, dtype=bool)[:, :, None, None]
                sums = b.emit(O.SumConv2d(f"{node.op.name}.read", eye), args)
                one = np.ones((1, c), dtype=np.int64)
                th = O.Threshold(node.op.name, 0 * one, one, np.zeros(c, dtype=np.int64))
                return b.emit(th, (sums,))
            prev = b.producer(args[0])
            if prev is None or not isinstance(prev.op, O.Affine):
                return None
            _single_reader(graph, node.args[0], f"one of them is the Sign '{node.op.name}'")
            aff = prev.op
            bounds, over_bits = operand_bounds(b, prev.args)
            bits = plane_precision(sum(bounds), DOUBLE_EXACT if over_bits else 62)
            cols = []
            for o in range(aff.c.shape[0]):
                t, s, unit, exact = channel_form(aff.t[:, o], aff.s[:, o], bits)
                if exact:
                    c = plane_constant(float(aff.c[o]), unit, t, s, bounds)
                    cols.append((t, s, np.array([c], dtype=np.int64)))
                else:
                    cols.append(
                        tuple(_fixed([aff.t[:, o], aff.s[:, o], aff.c[o : o + 1]], bits)[0])
                    )
            t = np.stack([col[0] for col in cols], axis=1)
            s = np.stack([col[1] for col in cols], axis=1)
            c = np.concatenate([col[2] for col in cols])
            return b.emit(O.Threshold(f"{aff.name}+{node.op.name}", t, s, c), prev.args)

        return rewrite(graph, rule)


@dataclass(frozen=True)
class QuantizeOutput:
    """The ``Affine`` the network returns (through any Flatten) becomes ``OutputAffine``: per
    channel ``t`` and ``s`` as exact integers times their unit where the levels allow
    (``integer_form``: then equal sums give equal outputs in every channel, as in the source
    model), else in fixed point with ``PRECISION`` bits and ``scale = 2^-shift``; ``bias = c``."""

    name: str = "quantize-output"

    def apply(self, graph: Graph) -> Graph:
        v = graph.result
        p = graph.producer(v)
        while p is not None and isinstance(p.op, O.Flatten):
            v = p.args[0]
            p = graph.producer(v)
        if p is None or not isinstance(p.op, O.Affine):
            return graph
        target = v

        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            if node.out != target:
                return None
            aff = node.op
            assert isinstance(aff, O.Affine)
            ts, ss, scales = [], [], []
            for o in range(aff.c.shape[0]):
                t, s, unit, _ = channel_form(aff.t[:, o], aff.s[:, o], PRECISION)
                ts.append(t)
                ss.append(s)
                scales.append(unit)
            out = O.OutputAffine(
                aff.name,
                np.stack(ts, axis=1),
                np.stack(ss, axis=1),
                np.array(scales),
                aff.c.copy(),
            )
            return b.emit(out, args)

        return rewrite(graph, rule)
