"""Lowered IR → the C view model: every decision the templates need, made here.

Layout of the portable target:

* the float32 input is read in PyTorch's (C, H, W) order; the input quantizer's codes are
  ``int16_t`` (``int32_t`` for wide ranges) in (C, H, W) order;
* bit tensors are packed per pixel, ``[H][W][words]`` of ``uint32_t``: channel ``c`` is bit
  ``c % 32`` of word ``c / 32``; padding bits are zero in activations and weights, so they
  never count in a popcount;
* two static ping-pong buffers hold bit tensors (no malloc): layer ``i`` reads one, writes the
  other;
* a binary convolution computes ``T = 2*popcount(window) - n_valid`` once per output pixel,
  shared by all output channels, then ``S[o] = 2*popcount(window & b[o]) - nnz_valid[o]``;
  a convolution over codes sums the codes (T) and the codes under the ones of ``b[o]`` (S);
  padded taps are skipped, which is exactly zero padding in the value domain;
* the output accumulators are int64 in (C, H, W) order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnc.errors import BncError
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.types import Kind

WORD = 32


class UnsupportedGraph(BncError):
    """The lowered graph has a shape the C backend cannot express."""


def words(c: int) -> int:
    return (c + WORD - 1) // WORD


@dataclass(frozen=True)
class ConvView:
    index: int
    name: str
    kind: str  # "bits" or "codes": what the input holds
    final: bool  # True: writes the int64 output; False: writes threshold bits
    c: int
    h: int
    w: int
    o: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    nw: int  # input words per pixel (bits)
    onw: int  # output words per pixel (threshold bits)
    weights: tuple[str, ...]  # bits: hex words [o][ky][kx][nw]; codes: 0/1 [o][c][ky][kx]
    nnz: tuple[int, ...]  # bits: ones per tap [o][ky][kx]
    t: tuple[int, ...]
    s: tuple[int, ...]
    c0: tuple[int, ...]
    src: str
    dst: str


@dataclass(frozen=True)
class PoolView:
    index: int
    name: str
    c: int
    h: int
    w: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    nw: int
    and_words: tuple[str, ...]
    src: str
    dst: str


@dataclass(frozen=True)
class ModelView:
    name: str
    input_size: int
    output_size: int
    input_kind: str  # "quantize" or "sign"
    input_c: int
    input_h: int
    input_w: int
    input_nw: int
    scale_hex: str
    qmin: int
    qmax: int
    first_dst: str
    buffer_words: int
    code_size: int
    code_type: str  # C type of the input quantizer's codes
    needs_popcount: bool  # some layer reads bits
    layers: tuple[ConvView | PoolView, ...]
    out_channels: int
    out_per_channel: int
    out_scale: tuple[str, ...]
    out_bias: tuple[str, ...]


def _pack_channels(bits_: np.ndarray) -> list[int]:
    """Bits along the last axis (channels) → 32-bit words, least significant first."""
    n = bits_.shape[-1]
    out = []
    for j in range(words(n)):
        chunk = bits_[..., j * WORD : (j + 1) * WORD].astype(np.uint64)
        shifts = np.arange(chunk.shape[-1], dtype=np.uint64)
        out.append((chunk << shifts).sum(axis=-1).astype(np.uint64))
    return np.stack(out, axis=-1).reshape(-1).tolist()


def _hex(v: int) -> str:
    return f"0x{int(v):08x}u"


def lower(graph: Graph, name: str) -> ModelView:
    ops, ins = graph.ops, graph.input_types()
    first = ops[0]
    c0, h0, w0 = graph.input.shape
    if isinstance(first, O.QuantizeInput):
        kind, scale = "quantize", float(np.float32(first.scale)).hex()
        qmin, qmax = first.qmin, first.qmax
    else:
        kind, scale, qmin, qmax = "sign", "0x1p+0", 0, 0
    bufs = ("bnc_buf0", "bnc_buf1")
    cur = "bnc_codes" if kind == "quantize" else bufs[0]
    nxt = 1 if kind == "sign" else 0
    layers: list[ConvView | PoolView] = []
    max_words = words(c0) * h0 * w0
    out_op: O.OutputAffine | None = None
    i = 1
    while i < len(ops):
        op, t_in = ops[i], ins[i]
        if isinstance(op, O.SumConv2d):
            plane = ops[i + 1]
            assert isinstance(plane, O.Threshold | O.OutputAffine)
            final = isinstance(plane, O.OutputAffine)
            o, c, kh, kw = op.weight.shape
            out_t = plane.infer(op.infer(t_in))
            _, oh, ow = out_t.shape
            dst = "acc" if final else bufs[nxt]
            if t_in.kind is Kind.BIT:
                wk = "bits"
                wts = tuple(_hex(v) for v in _pack_channels(op.weight.transpose(0, 2, 3, 1)))
                nnz = tuple(int(v) for v in op.weight.sum(axis=1).reshape(-1))
            else:
                wk = "codes"
                wts = tuple(str(int(v)) for v in op.weight.reshape(-1))
                nnz = ()
            layers.append(
                ConvView(
                    i,
                    plane.name,
                    wk,
                    final,
                    c,
                    t_in.shape[1],
                    t_in.shape[2],
                    o,
                    oh,
                    ow,
                    kh,
                    kw,
                    op.stride[0],
                    op.stride[1],
                    op.padding[0],
                    op.padding[1],
                    words(c),
                    words(o),
                    wts,
                    nnz,
                    tuple(int(v) for v in plane.t),
                    tuple(int(v) for v in plane.s),
                    tuple(int(v) for v in plane.c) if not final else (0,) * o,
                    cur,
                    dst,
                )
            )
            if final:
                out_op = plane
            else:
                max_words = max(max_words, words(o) * oh * ow)
                cur, nxt = bufs[nxt], 1 - nxt
            i += 2
        elif isinstance(op, O.BitMaxPool2d):
            c, h, w = t_in.shape
            _, oh, ow = op.infer(t_in).shape
            mask = tuple(_hex(v) for v in _pack_channels(op.and_mask[None]))
            layers.append(
                PoolView(
                    i,
                    op.name,
                    c,
                    h,
                    w,
                    oh,
                    ow,
                    *op.kernel,
                    *op.stride,
                    *op.padding,
                    words(c),
                    mask,
                    cur,
                    bufs[nxt],
                )
            )
            cur, nxt = bufs[nxt], 1 - nxt
            i += 1
        elif isinstance(op, O.Flatten):
            if t_in.kind is not Kind.ACC and t_in.shape[1:] != (1, 1):
                raise UnsupportedGraph(
                    f"layer '{op.name}': a Flatten of {t_in} must feed a BinaryLinear"
                )
            i += 1
        else:
            raise UnsupportedGraph(f"layer '{op.name}' ({op.opname}) has no C lowering")
    if out_op is None:
        raise UnsupportedGraph("the graph has no output layer")
    out_t = graph.output
    o = out_op.scale.shape[0]
    return ModelView(
        name=name,
        input_size=c0 * h0 * w0,
        output_size=out_t.size,
        input_kind=kind,
        input_c=c0,
        input_h=h0,
        input_w=w0,
        input_nw=words(c0),
        scale_hex=scale,
        qmin=qmin,
        qmax=qmax,
        first_dst="bnc_codes" if kind == "quantize" else bufs[0],
        buffer_words=max_words,
        code_size=c0 * h0 * w0 if kind == "quantize" else 1,
        code_type="int16_t" if -(2**15) <= qmin and qmax < 2**15 else "int32_t",
        needs_popcount=any(isinstance(v, ConvView) and v.kind == "bits" for v in layers),
        layers=tuple(layers),
        out_channels=o,
        out_per_channel=out_t.size // o,
        out_scale=tuple(float(v).hex() for v in out_op.scale),
        out_bias=tuple(float(v).hex() for v in out_op.bias),
    )
