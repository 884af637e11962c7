"""IR operations: one small frozen class per op, typed fields, shape inference in ``infer``.

Two levels share one graph container (``bnc.ir.graph.Graph``, a DAG of SSA values):

* import level, as the frontend builds it from the model: ``QuantizeInput``, ``Sign``,
  ``BinaryConv2d``, ``BinaryLinear`` (two weight levels), ``QuantConv2d``, ``QuantLinear``
  (any number of levels), ``BatchNorm``, ``Quantize`` (a k-bit activation), ``MaxPool2d``,
  ``Flatten``, ``Add`` (a residual sum of two tensors), ``Concat`` (channels),
  ``GlobalAvgPool``; their values are real numbers (float64 in the interpreter), mirroring
  PyTorch, except where a value is exactly a code tensor (bits, k-bit codes, and the integer
  sum a global average pool of bits or codes is);
* lowered, integer-only (DESIGN §2): ``SumConv2d`` computes the pair (T, S) of one binary
  mask, ``Threshold`` tests a per-channel integer plane over one or more such pairs (several
  masks of one layer, a residual add folded in), ``MultiThreshold`` counts thresholds passed
  (a k-bit code), ``Requantize`` rounds the plane to codes, ``BitMaxPool2d`` takes the max
  (or min) of bits or codes, ``Concat`` moves bits, ``GlobalAvgPool`` sums codes and
  ``OutputAffine`` forms the network's integer accumulator. ``Affine`` is the real-valued
  bridge the passes create and remove between the two levels.

``infer(*operand_types)`` checks the operands and returns the result type; ``arity`` is the
number of operands (``None``: one or more).

Array fields are numpy arrays that must not be mutated; ops therefore compare by identity.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from bnc.ir.types import Kind, TensorType

Pair = tuple[int, int]


class ShapeError(ValueError):
    """An op does not accept its input type."""


def _out_size(size: int, kernel: int, stride: int, pad: int, what: str, name: str) -> int:
    n = (size + 2 * pad - kernel) // stride + 1
    if size + 2 * pad < kernel or n < 1:
        raise ShapeError(
            f"layer '{name}': {what} {kernel} with padding {pad} does not fit an input of {size}"
        )
    return n


def _conv_out(op: Op, t: TensorType, shape: tuple[int, ...], stride: Pair, pad: Pair) -> TensorType:
    """The real output of a convolution of kernel ``shape`` (O, C, kh, kw) over ``t``."""
    o, c, kh, kw = shape
    if t.channels != c:
        raise ShapeError(f"layer '{op.name}' ({op.opname}) expects {c} input channels, got {t}")
    h = _out_size(t.shape[1], kh, stride[0], pad[0], "kernel", op.name)
    w = _out_size(t.shape[2], kw, stride[1], pad[1], "kernel", op.name)
    return TensorType(Kind.REAL, (o, h, w))


def _linear_out(op: Op, t: TensorType, o: int, i: int) -> TensorType:
    """The real output of a layer of ``o`` outputs over ``i`` input features."""
    if t.shape != (i, 1, 1):
        raise ShapeError(
            f"layer '{op.name}' ({op.opname}) expects {i} input features, got {t}"
            + (" (add a Flatten before it)" if t.size == i else "")
        )
    return TensorType(Kind.REAL, (o, 1, 1))


def _check_kind(name: str, op: str, t: TensorType, *kinds: Kind) -> None:
    if t.kind not in kinds:
        accepted = " or ".join(k.value for k in kinds)
        raise ShapeError(f"layer '{name}' ({op}) takes {accepted} input, not {t}")


def _vector(name: str, what: str, v: np.ndarray, n: int) -> None:
    if v.shape != (n,):
        raise ShapeError(f"layer '{name}': {what} must have shape ({n},), not {v.shape}")


@dataclass(frozen=True, eq=False)
class Op:
    name: str

    arity: ClassVar[int | None] = 1

    def infer(self, *ts: TensorType) -> TensorType:
        raise NotImplementedError

    def check_arity(self, n: int) -> None:
        if (self.arity is None and n < 1) or (self.arity is not None and n != self.arity):
            want = "one or more" if self.arity is None else str(self.arity)
            raise ShapeError(f"layer '{self.name}' ({self.opname}) takes {want} operands, not {n}")

    @property
    def opname(self) -> str:
        return type(self).__name__


# --- the input boundary (both levels) ----------------------------------------------------


@dataclass(frozen=True, eq=False)
class QuantizeInput(Op):
    """``q = clamp(round_half_even(u), qmin, qmax)`` with, in float32 and in this order,
    ``v = x * mul + add`` (each step rounded), ``u = v / scale + zero_point``; the code stands
    for ``scale * (q - zero_point)``. ``mul`` and ``add`` are an importer's per-tensor affine
    before the quantizer (QONNX's ``2x - 1``), computed as the file computes it."""

    scale: float
    qmin: int
    qmax: int
    zero_point: int = 0
    mul: float = 1.0
    add: float = 0.0

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.REAL)
        for what, v in (("scale", self.scale), ("mul", self.mul), ("add", self.add)):
            if not math.isfinite(v) or (what != "add" and v <= 0):
                raise ShapeError(f"layer '{self.name}' (QuantizeInput): bad {what} {v!r}")
        return TensorType(Kind.INT, t.shape, float(self.scale), self.qmin, self.qmax,
                          self.zero_point)  # fmt: skip


@dataclass(frozen=True, eq=False)
class Sign(Op):
    """``a = 1[x >= threshold]`` (``sign(0) = +1``); of a code, ``1[q >= zero_point]``.
    A nonzero float32 ``threshold`` is only for the network input (an importer folds a
    per-tensor ``a*x + b`` before a binarizer into it, exactly)."""

    threshold: float = 0.0

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.REAL, Kind.INT)
        if self.threshold != 0.0 and (t.kind is not Kind.REAL or not math.isfinite(self.threshold)):
            raise ShapeError(
                f"layer '{self.name}' (Sign): a threshold ({self.threshold!r}) is only for a"
                " finite comparison of the real network input"
            )
        return TensorType(Kind.BIT, t.shape)


MAX_CODE_BITS = 8


def code_type(name: str, shape, scale: float, zero_point: int, lo: int, hi: int) -> TensorType:
    """The type of a quantizer's k-bit codes, refusing widths outside 1..8 and bad scales."""
    if not (isinstance(scale, float | int) and math.isfinite(scale) and scale > 0):
        raise ShapeError(f"layer '{name}': the quantizer's scale must be positive, not {scale!r}")
    if not lo < hi or (hi - lo).bit_length() > MAX_CODE_BITS:
        raise ShapeError(
            f"layer '{name}': codes [{lo}, {hi}] need {(hi - lo).bit_length()} bits; bnc takes"
            f" 1 to {MAX_CODE_BITS}"
        )
    return TensorType(Kind.INT, tuple(shape), float(scale), int(lo), int(hi), int(zero_point))


@dataclass(frozen=True, eq=False)
class Quantize(Op):
    """A k-bit activation quantizer (``bnc.nn.ActQuantizer``, QONNX ``Quant``):
    ``q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)``, standing for
    ``scale * (q - zero_point)``. Import level: the passes fold it with the linear form before
    it into a ``MultiThreshold`` or a ``Requantize``.

    With ``thresholds`` (``(L,)`` or ``(C, L)``, non-decreasing, ``L = qmax - qmin``), the
    code is ``qmin + #{l : x >= thresholds[l]}`` instead: FINN's ``MultiThreshold``, and a
    quantizer whose input takes few values, whose rounding the importer takes from the
    reference's own float32 arithmetic."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int
    thresholds: np.ndarray | None = None

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        if t.kind is not Kind.REAL:
            raise ShapeError(
                f"layer '{self.name}' (Quantize): an activation quantizer takes the real output"
                f" of a binary layer (its BatchNorm, a residual add), not {t}"
            )
        if self.thresholds is not None:
            th = self.thresholds
            levels = self.qmax - self.qmin
            if th.shape not in ((levels,), (t.channels, levels)) or np.isnan(th).any():
                raise ShapeError(
                    f"layer '{self.name}' (Quantize): thresholds must have shape ({levels},) or"
                    f" ({t.channels}, {levels}), not {th.shape}"
                )
            if (np.diff(th, axis=-1) < 0).any():
                raise ShapeError(f"layer '{self.name}' (Quantize): thresholds must not decrease")
        return code_type(self.name, t.shape, self.scale, self.zero_point, self.qmin, self.qmax)


# --- import level ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BinaryConv2d(Op):
    """``y[o] = sum_{c,k valid} w[o,c,k] * x[c, p+k] + bias[o]``, ``w = alpha + (beta-alpha)*b``."""

    weight: np.ndarray  # bool (O, C, kh, kw): b
    alpha: np.ndarray  # float64 (O,)
    beta: np.ndarray  # float64 (O,)
    bias: np.ndarray  # float64 (O,)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.INT, Kind.BIT)
        for what, v in (("alpha", self.alpha), ("beta", self.beta), ("bias", self.bias)):
            _vector(self.name, what, v, self.weight.shape[0])
        return _conv_out(self, t, self.weight.shape, self.stride, self.padding)


@dataclass(frozen=True, eq=False)
class BinaryLinear(Op):
    """``y[o] = sum_i w[o,i] * x[i] + bias[o]`` over a vector input (C, 1, 1)."""

    weight: np.ndarray  # bool (O, I)
    alpha: np.ndarray
    beta: np.ndarray
    bias: np.ndarray

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.INT, Kind.BIT)
        o, i = self.weight.shape
        for what, v in (("alpha", self.alpha), ("beta", self.beta), ("bias", self.bias)):
            _vector(self.name, what, v, o)
        return _linear_out(self, t, o, i)


def _check_levels(op: Op, index: np.ndarray, levels: np.ndarray, bias: np.ndarray) -> None:
    o = index.shape[0]
    if levels.ndim != 2 or levels.shape[0] != o or levels.shape[1] < 1:
        raise ShapeError(
            f"layer '{op.name}' ({op.opname}): levels must have shape ({o}, L), not {levels.shape}"
        )
    if not np.isfinite(levels).all():
        raise ShapeError(f"layer '{op.name}' ({op.opname}): the weight levels are not finite")
    if index.size and (index.min() < 0 or index.max() >= levels.shape[1]):
        raise ShapeError(
            f"layer '{op.name}' ({op.opname}): weight indices must lie in [0, {levels.shape[1]})"
        )
    _vector(op.name, "bias", bias, o)


@dataclass(frozen=True, eq=False)
class QuantConv2d(Op):
    """A convolution with multi-level weights (DESIGN §2.5): ``w[o,c,k] = levels[o, index[o,c,k]]``,
    ``y[o] = sum_{c,k valid} w[o,c,k] * x[c, p+k] + bias[o]``. Ternary, k-bit integer, AMQ
    multi-bit and codebook weights are all this form; ``DecomposeWeights`` splits it into a
    shared term and sparse binary masks."""

    index: np.ndarray  # int (O, C, kh, kw): a column of levels
    levels: np.ndarray  # float64 (O, L)
    bias: np.ndarray  # float64 (O,)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.INT, Kind.BIT)
        _check_levels(self, self.index, self.levels, self.bias)
        return _conv_out(self, t, self.index.shape, self.stride, self.padding)


@dataclass(frozen=True, eq=False)
class QuantLinear(Op):
    """``y[o] = sum_i levels[o, index[o,i]] * x[i] + bias[o]`` over a vector input."""

    index: np.ndarray  # int (O, I)
    levels: np.ndarray  # float64 (O, L)
    bias: np.ndarray

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.INT, Kind.BIT)
        _check_levels(self, self.index, self.levels, self.bias)
        return _linear_out(self, t, *self.index.shape)


@dataclass(frozen=True, eq=False)
class BatchNorm(Op):
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` per channel (inference statistics)."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.REAL)
        for what, v in (
            ("gamma", self.gamma),
            ("beta", self.beta),
            ("running_mean", self.mean),
            ("running_var", self.var),
        ):
            _vector(self.name, what, v, t.channels)
        return t


@dataclass(frozen=True, eq=False)
class MaxPool2d(Op):
    """Max over a window; padded taps never win. On bits this is an OR."""

    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.REAL, Kind.BIT, Kind.INT)
        for k, p in zip(self.kernel, self.padding, strict=True):
            if 2 * p > k:
                raise ShapeError(
                    f"layer '{self.name}' (MaxPool2d): padding {p} must be at most half the"
                    f" kernel {k}"
                )
        c, h, w = t.shape
        oh = _out_size(h, self.kernel[0], self.stride[0], self.padding[0], "pool", self.name)
        ow = _out_size(w, self.kernel[1], self.stride[1], self.padding[1], "pool", self.name)
        return dataclasses.replace(t, shape=(c, oh, ow))


@dataclass(frozen=True, eq=False)
class Flatten(Op):
    """(C, H, W) to (C*H*W, 1, 1) in PyTorch's order (channel slowest)."""

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        if t.kind is Kind.SUMS:
            raise ShapeError(f"layer '{self.name}' (Flatten) cannot take {t}")
        return dataclasses.replace(t, shape=(t.size, 1, 1))


# --- lowered, integer-only ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SumConv2d(Op):
    """The pair of DESIGN §2.4 over valid (non-padded) taps, in units of the input's codes:

    ``T[p] = sum_{c,k valid} x[c,p+k]`` and ``S[o,p] = sum_{c,k valid, b[o,c,k]=1} x[c,p+k]``,
    where ``x`` is ``q - zero_point`` of a code or, for bits, ``2a - 1``. A padded tap
    contributes 0.
    """

    weight: np.ndarray  # bool (O, C, kh, kw)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.INT, Kind.BIT)
        o, c, kh, kw = self.weight.shape
        if t.channels != c:
            raise ShapeError(f"layer '{self.name}' (SumConv2d) expects {c} channels, got {t}")
        h = _out_size(t.shape[1], kh, self.stride[0], self.padding[0], "kernel", self.name)
        w = _out_size(t.shape[2], kw, self.stride[1], self.padding[1], "kernel", self.name)
        return dataclasses.replace(t, kind=Kind.SUMS, shape=(o, h, w))


def _sums_operands(op: Op, ts: tuple[TensorType, ...], t: np.ndarray, s: np.ndarray) -> None:
    for x in ts:
        _check_kind(op.name, op.opname, x, Kind.SUMS)
    if len({x.shape for x in ts}) != 1:
        shapes = ", ".join(str(x) for x in ts)
        raise ShapeError(f"layer '{op.name}' ({op.opname}): operands differ in shape: {shapes}")
    want = (len(ts), ts[0].channels)
    for what, v in (("t", t), ("s", s)):
        if v.shape != want:
            raise ShapeError(f"layer '{op.name}': {what} must have shape {want}, not {v.shape}")


@dataclass(frozen=True, eq=False)
class _Plane(Op):
    """``sum_k (t[k,o]*T_k + s[k,o]*S_k[o]) + c[o]`` over the pairs its ``K`` operands (each a
    ``SumConv2d``) return; ``t`` and ``s`` are (K, O), ``c`` is (O,)."""

    t: np.ndarray
    s: np.ndarray
    c: np.ndarray

    arity = None
    result = Kind.REAL

    def infer(self, *ts: TensorType) -> TensorType:
        _sums_operands(self, ts, self.t, self.s)
        _vector(self.name, "c", self.c, ts[0].channels)
        return TensorType(self.result, ts[0].shape)


@dataclass(frozen=True, eq=False)
class Affine(_Plane):
    """Real-valued ``y[o] = sum_k (t[k,o]*T_k + s[k,o]*S_k[o]) + c[o]`` (exists only between
    passes)."""


@dataclass(frozen=True, eq=False)
class Threshold(_Plane):
    """``a[o] = 1[sum_k (t[k,o]*T_k + s[k,o]*S_k[o]) + c[o] >= 0]`` in exact integers (int64
    coefficients)."""

    result = Kind.BIT


@dataclass(frozen=True, eq=False)
class MultiThreshold(_Plane):
    """A k-bit activation (DESIGN §2.7): ``q[o] = qmin + #{l : P[o] + c[l,o] >= 0}`` with
    ``P[o] = sum_k t[k,o]*T_k + s[k,o]*S_k[o]`` in exact integers; ``c`` is (L, O), one row
    per threshold, non-increasing down the rows so the count is a monotone code. A decreasing
    channel (``gamma < 0``) has negated ``t`` and ``s``. The codes stand for
    ``scale * (q - zero_point)``."""

    qmin: int = 0
    scale: float = 1.0
    zero_point: int = 0

    def infer(self, *ts: TensorType) -> TensorType:
        _sums_operands(self, ts, self.t, self.s)
        o = ts[0].channels
        if self.c.ndim != 2 or self.c.shape[1] != o or self.c.shape[0] < 1:
            raise ShapeError(f"layer '{self.name}': c must have shape (L, {o}), not {self.c.shape}")
        hi = self.qmin + self.c.shape[0]
        return code_type(self.name, ts[0].shape, self.scale, self.zero_point, self.qmin, hi)


def round_shift(v: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``round_half_even(v / 2^shift)`` of int64 ``v`` per element (``shift`` broadcasts;
    a negative shift multiplies, exactly). The one definition of requantization rounding."""
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    up = np.maximum(shift, 0)
    q = v >> up
    rem = v - (q << up)
    half = np.where(up > 0, np.int64(1) << np.maximum(up - 1, 0), np.int64(1) << 62)
    q = q + ((rem > half) | ((rem == half) & ((q & 1) == 1))).astype(np.int64)
    return np.where(shift < 0, v << np.maximum(-shift, 0), q)


@dataclass(frozen=True, eq=False)
class Requantize(_Plane):
    """An add (or any plane) kept as codes (DESIGN §2.8): ``q[o] = clamp(round_shift(P[o] +
    c[o], shift[o]), qmin, qmax)`` with ``round_shift`` the one definition of the rounding
    (half to even). The codes stand for ``scale * (q - zero_point)``."""

    shift: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    qmin: int = 0
    qmax: int = 255
    scale: float = 1.0
    zero_point: int = 0

    def infer(self, *ts: TensorType) -> TensorType:
        _sums_operands(self, ts, self.t, self.s)
        _vector(self.name, "c", self.c, ts[0].channels)
        _vector(self.name, "shift", self.shift, ts[0].channels)
        return code_type(self.name, ts[0].shape, self.scale, self.zero_point, self.qmin, self.qmax)


@dataclass(frozen=True, eq=False)
class BitMaxPool2d(Op):
    """Max-pool of bits or codes: OR (max) per channel, or AND (min) where ``and_mask`` is set
    (a max-pool moved past a decreasing threshold). Padded taps are ignored."""

    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)
    and_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.BIT, Kind.INT)
        _vector(self.name, "and_mask", self.and_mask, t.channels)
        return MaxPool2d(self.name, self.kernel, self.stride, self.padding).infer(t)


@dataclass(frozen=True, eq=False)
class OutputAffine(Op):
    """The network output: the integer accumulator ``acc[o] = sum_k t[k,o]*T_k + s[k,o]*S_k[o]``
    and its per-channel affine ``y = float32(acc * scale[o] + bias[o])``
    (``bnc.ir.interpreter.dequantize`` is the one place where that float happens)."""

    t: np.ndarray  # int64 (K, O)
    s: np.ndarray  # int64 (K, O)
    scale: np.ndarray  # float64, powers of two
    bias: np.ndarray  # float64

    arity = None

    def infer(self, *ts: TensorType) -> TensorType:
        _sums_operands(self, ts, self.t, self.s)
        for what, v in (("scale", self.scale), ("bias", self.bias)):
            _vector(self.name, what, v, ts[0].channels)
        return TensorType(Kind.ACC, ts[0].shape)


# --- graph forms (both levels) -----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Add(Op):
    """``a + b`` elementwise, same shape. A bit operand stands for ``2a - 1``, a code for
    ``scale * (q - zero_point)`` (import level only: the passes fold it into the consumer's
    plane)."""

    arity = 2

    def infer(self, *ts: TensorType) -> TensorType:
        a, b = ts
        for t in ts:
            _check_kind(self.name, self.opname, t, Kind.REAL, Kind.BIT, Kind.INT)
        if a.shape != b.shape:
            raise ShapeError(
                f"layer '{self.name}' (Add): the operands differ in shape, {a} and {b};"
                " a residual add needs equal shapes (downsample the shortcut to match)"
            )
        return TensorType(Kind.REAL, a.shape)


@dataclass(frozen=True, eq=False)
class Concat(Op):
    """Channels of every operand in order (``torch.cat(dim=1)``); same height and width."""

    arity = None

    def infer(self, *ts: TensorType) -> TensorType:
        kinds = {t.kind for t in ts}
        for t in ts:
            _check_kind(self.name, self.opname, t, Kind.REAL, Kind.BIT)
        if len(kinds) != 1 or len({t.shape[1:] for t in ts}) != 1:
            shown = ", ".join(str(t) for t in ts)
            raise ShapeError(
                f"layer '{self.name}' (Concat): operands must be of one kind and one height and"
                f" width, not {shown}"
            )
        c = sum(t.channels for t in ts)
        return TensorType(ts[0].kind, (c, *ts[0].shape[1:]))


@dataclass(frozen=True, eq=False)
class GlobalAvgPool(Op):
    """The mean over the whole map, one value per channel (``AdaptiveAvgPool2d(1)``).

    Of bits or codes it is exact as a code: the integer sum ``q = sum_p x[p]`` (bits as
    ``2a - 1``, codes as ``q - zero_point``) standing for ``q * scale / (H*W)``; the next
    layer folds the division into its coefficients. Of real values (import level) it is the
    float mean."""

    def infer(self, *ts: TensorType) -> TensorType:
        (t,) = ts
        _check_kind(self.name, self.opname, t, Kind.REAL, Kind.BIT, Kind.INT)
        c, h, w = t.shape
        if t.kind is Kind.REAL:
            return TensorType(Kind.REAL, (c, 1, 1))
        lo, hi = t.value_range
        n = h * w
        return TensorType(Kind.INT, (c, 1, 1), t.scale / n, lo * n, hi * n)


LOWERED_OPS = (
    QuantizeInput,
    Sign,
    SumConv2d,
    Threshold,
    MultiThreshold,
    Requantize,
    BitMaxPool2d,
    OutputAffine,
    Flatten,
    Concat,
    GlobalAvgPool,
)
