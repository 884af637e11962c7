"""The reference interpreter: the executable specification of DESIGN §2.

Lowered ops run in exact integer arithmetic. ``SumConv2d`` uses float64 matrix products for
speed; they are exact because every operand and partial sum is an integer below 2^53 (the
widths pass proves the far smaller bound ``|T|, |S| <= taps * max|x|``). Import-level ops
(``BinaryConv2d``, ``BatchNorm``...) run in float64 and mirror PyTorch up to rounding.

Values by kind: REAL float64, INT int64 codes, BIT uint8 0/1, SUMS ``Sums``, ACC int64; all
batched as (N, C, H, W). The graph is walked in its (topological) node order; a value read by
several nodes is computed once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnc.ir import ops as O
from bnc.ir.graph import INPUT, Graph, Node
from bnc.ir.types import Kind, TensorType

_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class Sums:
    """The pair of DESIGN §2.4: ``t`` (N, 1, H, W) and ``s`` (N, O, H, W), int64."""

    t: np.ndarray
    s: np.ndarray


Value = Any  # np.ndarray or Sums


def _values(x: np.ndarray, t: TensorType) -> np.ndarray:
    """The integer each element stands for: ``q - zero_point`` for INT, ``2a - 1`` for BIT."""
    if t.kind is Kind.BIT:
        return x.astype(np.int64) * 2 - 1
    return x.astype(np.int64) - t.zero_point


def _windows(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """(N, C, Hp, Wp) to (N, C, OH, OW, kh, kw) views."""
    win = np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=(2, 3))
    return win[:, :, :: stride[0], :: stride[1]]


def _pad(x: np.ndarray, padding: tuple[int, int], value: float | int) -> np.ndarray:
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def sum_conv(
    v: np.ndarray, weight: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]
) -> Sums:
    """T and S of integer values ``v`` (N, C, H, W) against kernel bits ``weight``."""
    o, c, kh, kw = weight.shape
    b = weight.reshape(o, -1).astype(np.float64).T
    n = v.shape[0]
    ts, ss = [], []
    xp = _pad(v.astype(np.float64), padding, 0.0)
    oh = (xp.shape[2] - kh) // stride[0] + 1
    ow = (xp.shape[3] - kw) // stride[1] + 1
    step = max(1, _CHUNK_ELEMENTS // max(1, oh * ow * c * kh * kw))
    for i in range(0, n, step):
        win = _windows(xp[i : i + step], (kh, kw), stride)
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, oh, ow, c * kh * kw)
        ts.append(cols.sum(axis=-1)[:, None])
        ss.append((cols @ b).transpose(0, 3, 1, 2))
    t = np.rint(np.concatenate(ts)).astype(np.int64)
    s = np.rint(np.concatenate(ss)).astype(np.int64)
    return Sums(t, s)


def _chan(v: np.ndarray) -> np.ndarray:
    return v.reshape(1, -1, 1, 1)


def max_pool(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    pad_value: float | int,
) -> np.ndarray:
    return _windows(_pad(x, padding, pad_value), kernel, stride).max(axis=(-2, -1))


def dequantize(acc: np.ndarray, op: O.OutputAffine) -> np.ndarray:
    """The network output: ``float32(acc * scale + bias)``, computed in float64.

    ``scale`` is a power of two, so ``acc * scale`` is exact and the result does not depend on
    whether a backend fuses the multiply and add. The only float step after the input.
    """
    return (acc.astype(np.float64) * _chan(op.scale) + _chan(op.bias)).astype(np.float32)


def _binary_layer(v: np.ndarray, t: TensorType, op: O.BinaryConv2d) -> np.ndarray:
    sums = sum_conv(v, op.weight, op.stride, op.padding)
    a, d = _chan(op.alpha), _chan(op.beta - op.alpha)
    return t.scale * (a * sums.t + d * sums.s) + _chan(op.bias)


def _quant_layer(v: np.ndarray, t: TensorType, op: O.QuantConv2d) -> np.ndarray:
    """Float64 convolution of the values ``v`` with the weights ``levels[o, index]``."""
    o, c, kh, kw = op.index.shape
    w = np.take_along_axis(op.levels, op.index.reshape(o, -1), axis=1)
    xp = _pad(v.astype(np.float64), op.padding, 0.0)
    outs = []
    for i in range(v.shape[0]):
        win = _windows(xp[i : i + 1], (kh, kw), op.stride)  # (1, C, OH, OW, kh, kw)
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(*win.shape[2:4], -1)
        outs.append((cols @ w.T).transpose(2, 0, 1))
    return t.scale * np.stack(outs) + _chan(op.bias)


def _plane(op: O._Plane | O.OutputAffine, sums: tuple[Sums, ...]) -> np.ndarray:
    acc = np.zeros_like(sums[0].s)
    for k, x in enumerate(sums):
        acc = acc + _chan(op.t[k].astype(np.int64)) * x.t + _chan(op.s[k].astype(np.int64)) * x.s
    return acc


def _real(x: np.ndarray, t: TensorType) -> np.ndarray:
    """What an element stands for, as a real number (bits: 2a - 1; codes: scale * q)."""
    if t.kind is Kind.REAL:
        return x
    return t.scale * _values(x, t).astype(np.float64)


def run_op(op: O.Op, xs: tuple[Value, ...], ts: tuple[TensorType, ...]) -> Value:
    """Apply one op to its batched operand values ``xs`` of types ``ts``."""
    x, t = xs[0], ts[0]
    match op:
        case O.QuantizeInput():
            f32 = np.float32
            v = np.asarray(x).astype(f32)
            if op.mul != 1.0:
                v = np.multiply(v, f32(op.mul), dtype=f32)
            if op.add != 0.0:
                v = np.add(v, f32(op.add), dtype=f32)
            q = np.divide(v, f32(op.scale), dtype=f32)
            if op.zero_point:
                q = np.add(q, f32(op.zero_point), dtype=f32)
            if np.isnan(q).any():
                raise ValueError("the input contains NaN")
            return np.clip(np.rint(q), op.qmin, op.qmax).astype(np.int64)
        case O.Sign():
            if t.kind is Kind.INT:
                return (_values(x, t) >= 0).astype(np.uint8)
            return (np.asarray(x) >= np.float32(op.threshold)).astype(np.uint8)
        case O.Quantize() if op.thresholds is not None:
            v = np.asarray(x, dtype=np.float64)
            th = np.broadcast_to(op.thresholds, (t.channels, op.thresholds.shape[-1]))
            passed = v[..., None] >= th[None, :, None, None, :]
            return (op.qmin + passed.sum(axis=-1)).astype(np.int64)
        case O.Quantize():
            q = np.rint(np.asarray(x, dtype=np.float64) / op.scale) + op.zero_point
            return np.clip(q, op.qmin, op.qmax).astype(np.int64)
        case O.BinaryConv2d():
            return _binary_layer(_values(x, t), t, op)
        case O.BinaryLinear():
            conv = O.BinaryConv2d(op.name, op.weight[:, :, None, None], op.alpha, op.beta, op.bias)
            return _binary_layer(_values(x, t), t, conv)
        case O.QuantConv2d():
            return _quant_layer(_values(x, t), t, op)
        case O.QuantLinear():
            conv = O.QuantConv2d(op.name, op.index[:, :, None, None], op.levels, op.bias)
            return _quant_layer(_values(x, t), t, conv)
        case O.BatchNorm():
            k = op.gamma / np.sqrt(op.var + op.eps)
            return _chan(k) * (x - _chan(op.mean)) + _chan(op.beta)
        case O.MaxPool2d():
            pad = -np.inf if t.kind is Kind.REAL else (0 if t.kind is Kind.BIT else t.lo)
            return max_pool(x, op.kernel, op.stride, op.padding, pad)
        case O.Flatten():
            if isinstance(x, Sums):
                raise TypeError("Flatten of sums")
            return x.reshape(x.shape[0], -1, 1, 1)
        case O.Add():
            return _real(x, t) + _real(xs[1], ts[1])
        case O.Concat():
            return np.concatenate(xs, axis=1)
        case O.GlobalAvgPool():
            if t.kind is Kind.REAL:
                return x.mean(axis=(2, 3), keepdims=True)
            return _values(x, t).sum(axis=(2, 3), keepdims=True)
        case O.SumConv2d():
            return sum_conv(_values(x, t), op.weight, op.stride, op.padding)
        case O.Affine():
            out = _chan(op.c).astype(np.float64)
            for k, v in enumerate(xs):
                out = out + _chan(op.t[k]) * v.t + _chan(op.s[k]) * v.s
            return out
        case O.Threshold():
            return (_plane(op, xs) + _chan(op.c.astype(np.int64)) >= 0).astype(np.uint8)
        case O.MultiThreshold():
            plane = _plane(op, xs)
            count = sum(plane + _chan(op.c[j].astype(np.int64)) >= 0 for j in range(len(op.c)))
            return (op.qmin + count).astype(np.int64)
        case O.Requantize():
            plane = _plane(op, xs) + _chan(op.c.astype(np.int64))
            q = O.round_shift(plane, _chan(op.shift.astype(np.int64)))
            return np.clip(q, op.qmin, op.qmax).astype(np.int64)
        case O.BitMaxPool2d():
            lo, hi = (0, 1) if t.kind is Kind.BIT else (t.lo, t.hi)
            v = x.astype(np.int64)
            mx = max_pool(v, op.kernel, op.stride, op.padding, lo)
            mn = lo + hi - max_pool(lo + hi - v, op.kernel, op.stride, op.padding, lo)
            out = np.where(_chan(op.and_mask), mn, mx)
            return out.astype(np.uint8 if t.kind is Kind.BIT else np.int64)
        case O.OutputAffine():
            return _plane(op, xs)
    raise TypeError(f"the interpreter has no rule for {op.opname}")


def _prepare(graph: Graph, x: np.ndarray) -> np.ndarray:
    want = graph.input.shape
    if x.ndim == 2 and want[1:] == (1, 1):
        x = x.reshape(x.shape[0], -1, 1, 1)
    if tuple(x.shape[1:]) != want:
        raise ValueError(f"input batch has shape {x.shape}, the graph takes (N, {want})")
    return x


def run(
    graph: Graph,
    x: np.ndarray,
    observe: Callable[[Node, Value], None] | None = None,
) -> Value:
    """Run ``graph`` on a batch ``x`` (N, *input shape) and return its result value.

    ``observe(node, value)`` is called after every node (the verification ladder uses it).
    A value is dropped once its last reader has run.
    """
    values: dict[str, Value] = {INPUT: _prepare(graph, x)}
    last = {a: i for i, n in enumerate(graph.nodes) for a in n.args}
    for i, node in enumerate(graph.nodes):
        v = run_op(node.op, tuple(values[a] for a in node.args), graph.in_types(node))
        values[node.out] = v
        if observe is not None:
            observe(node, v)
        for a in set(node.args):
            if last[a] == i and a != graph.result:
                del values[a]
    return values[graph.result]


def run_all(graph: Graph, x: np.ndarray) -> dict[str, Value]:
    """Every value by name, the input included."""
    values: dict[str, Value] = {INPUT: _prepare(graph, x)}
    run(graph, x, lambda node, v: values.__setitem__(node.out, v))
    return values
