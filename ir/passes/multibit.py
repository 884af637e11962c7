"""Passes for multi-level weights and k-bit activations (DESIGN §2.5–2.7).

* ``DecomposeWeights``: a ``QuantConv2d`` becomes ``w = λ_0 + Σ_i λ_i·m_i`` per output
  channel, one ``SumConv2d`` per binary mask ``m_i`` (all reading the same input, so a backend
  counts T once) and a real ``Affine`` whose T coefficient is λ_0 on the first operand only.
* ``FoldQuantize``: ``Affine Quantize`` becomes a ``MultiThreshold`` (up to ``MULTI_MAX``
  thresholds, FINN's form) or, for wider codes, a ``Requantize`` (fixed-point multiply, round
  half to even, clamp). A residual add folded into the Affine is part of the same linear form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bnc.ir import ops as O
from bnc.ir.graph import Graph, Node
from bnc.ir.passes.lowering import (
    DOUBLE_EXACT,
    _fixed,
    _single_reader,
    channel_form,
    operand_bounds,
    plane_constant,
    plane_precision,
)
from bnc.ir.rewrite import Builder, rewrite

MULTI_MAX = 15  # thresholds of the widest MultiThreshold (4-bit codes); wider codes requantize
ONE_HOT_MAX = 4  # one-hot masks at most this many times as many as the bit planes (bytes)


@dataclass(frozen=True)
class Decomposition:
    """``w[o] = lam0[o] + sum_i lam[i, o] * masks[i, o]``."""

    lam0: np.ndarray  # (O,)
    masks: np.ndarray  # bool (K, O, C, kh, kw)
    lam: np.ndarray  # (K, O)

    @property
    def cost(self) -> int:
        """Nonzero 4-channel pieces of the masks per tap (what the popcount kernels visit) plus
        one per mask and output channel (its share of the plane)."""
        k, o = self.masks.shape[:2]
        return sum(_pieces(m) for m in self.masks) + k * o


def _pieces(mask: np.ndarray) -> int:
    """Nonzero 4-channel pieces per tap of one mask (O, C, ...)."""
    o, c = mask.shape[:2]
    groups = -(-c // 4)
    padded = np.zeros((o, groups * 4, *mask.shape[2:]), dtype=bool)
    padded[:, :c] = mask
    return int(padded.reshape(o, groups, 4, *mask.shape[2:]).any(axis=2).sum())


def _one_hot_slots(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel the most common level (λ_0, (O,)) and the others by falling count: slot
    ``i`` holds each channel's ``i``-th most common other level, NaN where it has fewer."""
    o = w.shape[0]
    lam0 = np.zeros(o)
    rest: list[list[float]] = []
    for j in range(o):
        vals, counts = np.unique(w[j], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        lam0[j] = vals[order[0]]
        rest.append([float(vals[i]) for i in order[1:]])
    slots = np.full((max(len(r) for r in rest), o), np.nan)
    for j, levels in enumerate(rest):
        slots[: len(levels), j] = levels
    return lam0, slots


def _one_hot_cost(w: np.ndarray, shape: tuple[int, ...], slots: np.ndarray) -> int:
    """``_one_hot(...).cost`` one mask at a time (a 256-level layer would need 255 masks)."""
    o = w.shape[0]
    return sum(_pieces((w == v[:, None]).reshape(o, *shape)) for v in slots) + slots.size


def _one_hot(w: np.ndarray, shape: tuple[int, ...], lam0: np.ndarray, slots: np.ndarray):
    """Every level but λ_0 a one-hot mask, in the slots of ``_one_hot_slots``."""
    o = w.shape[0]
    masks = np.zeros((len(slots), o, *shape), dtype=bool)
    for i, v in enumerate(slots):
        masks[i] = (w == v[:, None]).reshape(o, *shape)
    lam = np.where(np.isnan(slots), 0.0, slots - lam0[None, :])
    return Decomposition(lam0, masks, lam)


def _subset_sums(row: np.ndarray, k: int, tol: float) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lam, code)`` when the row's ``2^k`` levels, in any order, are ``min + sum_i b_i *
    lam[i]`` over all ``b`` in ``{0, 1}^k`` (AMQ's ``sum_i ±alpha_i`` sorted): ``code[n]`` is
    level ``n``'s ``b`` as an integer. The lams are peeled off smallest first: the smallest
    positive sum is one, and the sums pair off as ``(s, s + lam)``; the lower halves are the
    sums of the others."""
    cur = np.sort(row - row.min())
    lams = []
    for _ in range(k):
        lam = cur[1] - cur[0]
        used = np.zeros(len(cur), dtype=bool)
        low, j = [], 0
        for i in range(len(cur)):
            if used[i]:
                continue
            used[i] = True
            target = cur[i] + lam
            j = max(j, i + 1)
            while j < len(cur) and (used[j] or cur[j] < target - tol):
                j += 1
            if j == len(cur) or abs(cur[j] - target) > tol:
                return None
            used[j] = True
            low.append(cur[i])
        lams.append(lam)
        cur = np.array(low)
    lam_v = np.array(lams)
    n = np.arange(1 << k)
    table = (((n[:, None] >> np.arange(k)[None, :]) & 1) * lam_v[None, :]).sum(axis=1)
    shifted = row - row.min()
    by_level, by_table = np.argsort(shifted, kind="stable"), np.argsort(table, kind="stable")
    if not (np.abs(shifted[by_level] - table[by_table]) <= tol).all():
        return None
    code = np.empty(1 << k, dtype=np.int64)
    code[by_level] = by_table
    return lam_v, code


def _planes(index: np.ndarray, levels: np.ndarray, shape: tuple[int, ...]) -> Decomposition | None:
    """Where ``levels[o, n] = levels[o, 0] + sum_i bit_i(n) * (levels[o, 2^i] - levels[o, 0])``
    (k-bit integers in offset binary, AMQ's ±α planes), the index's bits are the masks; where
    the levels are such sums in another order (AMQ's levels sorted, as ``CodebookQuantizer``
    keeps them), the bits of each level's place among the sums (``_subset_sums``). Each mask is
    complemented per channel where that makes it sparser."""
    o, n_levels = levels.shape
    k = n_levels.bit_length() - 1
    if k < 1 or n_levels != 1 << k:
        return None
    base = levels[:, :1]
    lam = np.stack([levels[:, 1 << i] - levels[:, 0] for i in range(k)])  # (K, O)
    n = np.arange(n_levels)
    bits = (n[None, :] >> np.arange(k)[:, None]) & 1  # (K, L)
    rebuilt = base + (lam[:, :, None] * bits[:, None, :]).sum(axis=0)
    scale = np.maximum(np.abs(levels).max(axis=1, keepdims=True), 1e-300)
    flat = index.reshape(o, -1)
    if not (np.abs(rebuilt - levels) <= 1e-6 * scale).all():
        base = levels.min(axis=1, keepdims=True)
        codes = np.empty((o, n_levels), dtype=np.int64)
        for j in range(o):
            found = _subset_sums(levels[j], k, 1e-6 * k * float(scale[j, 0]))
            if found is None:
                return None
            lam[:, j], codes[j] = found
        flat = np.take_along_axis(codes, flat, axis=1)
    masks = ((flat[None] >> np.arange(k)[:, None, None]) & 1).astype(bool)
    lam0 = base[:, 0].copy()
    flip = masks.sum(axis=2) * 2 > masks.shape[2]  # (K, O)
    masks = np.where(flip[:, :, None], ~masks, masks)
    lam0 = lam0 + (lam * flip).sum(axis=0)
    lam = np.where(flip, -lam, lam)
    return Decomposition(lam0, masks.reshape(k, o, *shape), lam)


def decompose(index: np.ndarray, levels: np.ndarray) -> Decomposition:
    """The sparsest decomposition of the weights ``levels[o, index]``: one-hot masks or bit
    planes, whichever costs less, but never more than ``ONE_HOT_MAX`` times as many one-hot
    masks as planes (an 8-bit layer's 255 sparse masks would visit fewer pieces than its 8
    planes but take 32 times their bytes); masks with no ones in any channel are dropped (one
    all-zero mask stays when every channel has one level, so the layer still has its T)."""
    o = index.shape[0]
    shape = index.shape[1:]
    w = np.take_along_axis(levels, index.reshape(o, -1), axis=1)
    lam0, slots = _one_hot_slots(w)
    planes = _planes(index, levels, shape)
    if planes is None or (
        len(slots) <= ONE_HOT_MAX * planes.masks.shape[0]
        and _one_hot_cost(w, shape, slots) <= planes.cost
    ):
        best = _one_hot(w, shape, lam0, slots)  # the cheaper, or the only one
    else:
        best = planes
    keep = np.array([m.any() for m in best.masks], dtype=bool)
    if not keep.size or not keep.any():
        return Decomposition(best.lam0, np.zeros((1, o, *shape), dtype=bool), np.zeros((1, o)))
    return Decomposition(best.lam0, best.masks[keep], best.lam[keep])


@dataclass(frozen=True)
class DecomposeWeights:
    """``QuantConv2d`` → one ``SumConv2d`` per mask and a real ``Affine`` over them (the input's
    scale folded into the coefficients, λ_0 on the first operand's T)."""

    name: str = "decompose-weights"

    def apply(self, graph: Graph) -> Graph:
        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            op = node.op
            if not isinstance(op, O.QuantConv2d):
                return None
            scale = b.types[args[0]].scale
            d = decompose(op.index, op.levels)
            k = d.masks.shape[0]
            sums = tuple(
                b.emit(
                    O.SumConv2d(
                        op.name if k == 1 else f"{op.name}[m{i}]", m, op.stride, op.padding
                    ),
                    args,
                )  # fmt: skip
                for i, m in enumerate(d.masks)
            )
            t = np.zeros((k, d.lam0.shape[0]))
            t[0] = d.lam0 * scale
            aff = O.Affine(op.name, t, d.lam * scale, op.bias.astype(np.float64))
            return b.emit(aff, sums)

        return rewrite(graph, rule)


@dataclass(frozen=True)
class FoldQuantize:
    """``Affine Quantize`` → ``MultiThreshold`` or ``Requantize`` over the Affine's operands.

    With ``u = y / scale + zero_point`` the code is ``clamp(round_half_even(u), qmin, qmax)``:
    the number of thresholds ``u >= qmin + l - 1/2`` (l = 1..L) it passes, plus ``qmin``. Per
    channel the linear part of ``u`` is ``unit * P`` with an integer plane P
    (``channel_form``: exact integers where the levels allow, else fixed point), so threshold
    ``l`` is ``P + floor((cst - θ_l) / unit) >= 0``; a decreasing channel has a negative unit
    folded into P's coefficients, so no flip is needed. A value exactly on a rounding tie goes
    up (the quantizer rounds ties to even): the documented difference. Codes of more than
    ``MULTI_MAX`` thresholds requantize: P in fixed point with ``unit = 2^-shift``, then
    ``round_shift(P + rint(cst * 2^shift), shift)`` and the clamp."""

    name: str = "fold-quantize"

    def apply(self, graph: Graph) -> Graph:
        def rule(b: Builder, node: Node, args: tuple[str, ...]) -> str | None:
            q = node.op
            prev = b.producer(args[0])
            if not isinstance(q, O.Quantize) or prev is None or not isinstance(prev.op, O.Affine):
                return None
            _single_reader(graph, node.args[0], f"one of them is the quantizer '{q.name}'")
            aff = prev.op
            bounds, over_bits = operand_bounds(b, prev.args)
            code_bits = (q.qmax - q.qmin).bit_length() + 1
            bits = plane_precision(sum(bounds), (DOUBLE_EXACT if over_bits else 62) - code_bits)
            levels = q.qmax - q.qmin
            if q.thresholds is not None and levels > MULTI_MAX:
                from bnc.ir.passes import LoweringError

                raise LoweringError(
                    f"layer '{q.name}' (Quantize): {levels} explicit thresholds; bnc takes at"
                    f" most {MULTI_MAX} (4-bit codes) where they are not uniform"
                )
            given = None
            if q.thresholds is not None:
                given = np.broadcast_to(q.thresholds, (aff.c.shape[0], levels))
            name = f"{aff.name}+{q.name}"
            ts, ss, cs, shifts = [], [], [], []
            for o in range(aff.c.shape[0]):
                cst = aff.c[o] / q.scale + q.zero_point
                tc, sc = aff.t[:, o] / q.scale, aff.s[:, o] / q.scale
                if levels <= MULTI_MAX:
                    t, s, unit, _ = channel_form(tc, sc, bits)
                    theta = q.qmin + np.arange(1, levels + 1) - 0.5
                    if given is not None:  # x >= t  <=>  u >= t/scale + zero_point
                        theta = given[o] / q.scale + q.zero_point
                    c = [plane_constant(cst - th, unit, t, s, bounds) for th in theta]
                else:
                    (t, s), shift = _fixed([tc, sc], bits)
                    margin = (max(abs(q.qmin), abs(q.qmax)) + 1) << max(shift, 0)
                    unit = math.ldexp(1.0, -shift)
                    c = plane_constant(cst + unit / 2, unit, t, s, bounds, margin)
                    shifts.append(shift)
                ts.append(t)
                ss.append(s)
                cs.append(c)
            t, s = np.stack(ts, axis=1), np.stack(ss, axis=1)
            if levels <= MULTI_MAX:
                c = np.array(cs, dtype=np.int64).T  # (L, O)
                out = O.MultiThreshold(name, t, s, c, q.qmin, q.scale, q.zero_point)
            else:
                c = np.array(cs, dtype=np.int64)
                shift = np.array(shifts, dtype=np.int64)
                out = O.Requantize(name, t, s, c, shift, q.qmin, q.qmax, q.scale, q.zero_point)
            return b.emit(out, prev.args)

        return rewrite(graph, rule)
