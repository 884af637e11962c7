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

Two schedules compute a binary convolution (``schedule`` picks one per layer, see ``choose``):

* ``generic``: the loop above, one output pixel at a time, AND + popcount over channel words;
  any stride, any input;
* ``planar`` (stride 1, bit input): the layer's input is re-laid as *nibble planes*, one byte
  per pixel per four channels, over the zero-padded image flattened row by row, so that tap
  ``(ky, kx)`` of the output at flat position ``q`` is the input at ``q + ky*Wp + kx``. Each
  nonzero 4-bit piece of ``b[o]`` (an *entry*: plane, tap, nibble ``m``) adds
  ``popcount(m & nibble)`` over a whole vector of positions with one table lookup
  (``pshufb`` / ``vqtbl1q_u8``) and one add. Zero nibbles have no entry, so a zero kernel costs
  nothing and a one-hot kernel one lookup per vector; ``T`` is counted once per position and
  shared by all output channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnc.errors import BncError
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.types import Kind

WORD = 32
# The widest vector block the planar kernel may use (4 vectors of 64 bytes, AVX-512): buffers
# are sized for it, so one emitted source serves every instruction set.
BLOCK_MAX = 256
SCHEDULES = ("auto", "generic", "planar")


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
    weights: tuple[str, ...]  # bits: hex words [o][ky][kx][nw]; codes: 0/1 [c][ky][kx][o]
    nnz: tuple[int, ...]  # bits: ones per tap [o][ky][kx]
    t: tuple[int, ...]
    s: tuple[int, ...]
    c0: tuple[int, ...]
    src: str
    dst: str


@dataclass(frozen=True)
class PlanarView:
    """A stride-1 binary convolution in the planar schedule (see the module docstring)."""

    index: int
    name: str
    final: bool
    unit: str  # "nibble" (table lookups, x86) or "byte" (AND + popcount, NEON)
    c: int
    h: int
    w: int
    o: int
    oh: int
    ow: int
    kh: int
    kw: int
    ph: int
    pw: int
    nw: int
    onw: int
    planes: int  # planes that carry channels: 2 * ceil(C / 8) nibble or ceil(C / 8) byte planes
    wp: int  # padded row length
    hp: int
    q: int  # flat output positions, OH * Wp (the last 2*PW of each row are not outputs)
    qmax: int  # q rounded up to BLOCK_MAX
    ps: int  # plane stride: every read of a block stays inside its plane
    y_lo: int  # rows [y_lo, y_hi) and columns [x_lo, x_hi) see every tap (interior)
    y_hi: int
    x_lo: int
    x_hi: int
    start: tuple[int, ...]  # entries of output channel o: start[o] .. start[o+1]
    off: tuple[int, ...]  # entry: plane * ps + ky * wp + kx
    tab: tuple[int, ...]  # entry: the weight nibble (1..15) or byte (1..255) m
    nnz_tap: tuple[int, ...]  # ones of b per (o, ky, kx), for border positions
    nnz: tuple[int, ...]  # ones of b per o
    t: tuple[int, ...]
    s: tuple[int, ...]
    c0: tuple[int, ...]
    exact_double: bool  # every partial sum of the interior plane is below 2^53 in magnitude
    src: str
    dst: str

    @property
    def entries(self) -> int:
        return len(self.off)


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
    layers: tuple[ConvView | PlanarView | PoolView, ...]
    nib_size: int  # bytes of the planar schedule's nibble planes (0: no planar layer)
    pc_size: int  # padded positions of the largest planar input
    q_size: int  # flat output positions of the largest planar layer
    out_channels: int
    out_per_channel: int
    out_scale: tuple[str, ...]
    out_bias: tuple[str, ...]

    @property
    def nibble_tables(self) -> bool:
        """Some planar layer uses nibble entries (and so the lookup tables)."""
        return any(isinstance(v, PlanarView) and v.unit == "nibble" for v in self.layers)


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


def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def entries_of(weight: np.ndarray, unit: str) -> np.ndarray:
    """(O, C, kh, kw) bits → (O, planes, kh, kw) pieces of ``n`` = 4 (nibble) or 8 (byte)
    channels: plane j holds channels n*j .. n*j+n-1, channel n*j+i as bit i."""
    n = 4 if unit == "nibble" else 8
    o, c, kh, kw = weight.shape
    padded = np.zeros((o, _round_up(c, 8), kh, kw), dtype=np.uint16)
    padded[:, :c] = weight
    pieces = padded.reshape(o, -1, n, kh, kw)
    return (pieces << np.arange(n, dtype=np.uint16)[None, None, :, None, None]).sum(axis=2)


def planar_cost(
    weight: np.ndarray, out_hw: tuple[int, int], pad: tuple[int, int], unit: str = "nibble"
) -> float:
    """Vector-op estimate of the planar schedule per 16 positions: two ops per nibble entry
    (lookup, add) or three per byte entry (and, count, add), plus about one op per output
    (channel, position) for the threshold and four per input byte for the re-layout."""
    o, c, kh, kw = weight.shape
    q = out_hw[0] * (out_hw[1] + 2 * pad[1])
    entries = int(np.count_nonzero(entries_of(weight, unit)))
    per = 2.0 if unit == "nibble" else 3.0
    return per * entries * -(-q // 16) + o * q + 4.0 * c * q / 8


def generic_cost(weight: np.ndarray, out_hw: tuple[int, int]) -> float:
    """Scalar-op estimate of the generic schedule: AND, popcount and add per 32-bit word."""
    o, c, kh, kw = weight.shape
    return 3.0 * out_hw[0] * out_hw[1] * (o + 1) * kh * kw * words(c)


def choose(
    op: O.SumConv2d, t_in_kind: Kind, out_hw: tuple[int, int], schedule: str, unit: str = "nibble"
) -> str:
    """The schedule of one convolution: ``planar`` needs stride 1 and bits in; ``auto`` takes
    the cheaper by the two estimates above (docs/benchmarks.md shows them against timings)."""
    if t_in_kind is not Kind.BIT or op.stride != (1, 1):
        return "generic"
    if schedule != "auto":
        return schedule
    planar = planar_cost(op.weight, out_hw, op.padding, unit)
    return "planar" if planar < generic_cost(op.weight, out_hw) else "generic"


def _planar(
    i: int,
    op: O.SumConv2d,
    plane: O.Threshold | O.OutputAffine,
    t_in,
    out_hw,
    src: str,
    dst: str,
    unit: str,
) -> PlanarView:
    o, c, kh, kw = op.weight.shape
    _, h, w = t_in.shape
    oh, ow = out_hw
    ph, pw = op.padding
    wp, hp = w + 2 * pw, h + 2 * ph
    q = oh * wp
    qmax = _round_up(q, BLOCK_MAX)
    ps = _round_up(max(qmax + (kh - 1) * wp + kw - 1, hp * wp), 64)
    nib = entries_of(op.weight, unit)  # (O, planes, kh, kw)
    start, off, tab = [0], [], []
    for k in range(o):
        pl, ky, kx = np.nonzero(nib[k])
        off += (pl * ps + ky * wp + kx).tolist()
        tab += nib[k][pl, ky, kx].tolist()
        start.append(len(off))
    final = isinstance(plane, O.OutputAffine)
    nnz = op.weight.reshape(o, -1).sum(axis=1)
    cc = [0] * o if final else [int(v) for v in plane.c]
    # interior plane = t*T + (2s)*pab + (c - s*nnz), |T| <= C*kh*kw, 0 <= pab <= nnz
    bound = max(
        abs(int(plane.t[k])) * c * kh * kw
        + 2 * abs(int(plane.s[k])) * int(nnz[k])
        + abs(cc[k] - int(plane.s[k]) * int(nnz[k]))
        for k in range(o)
    )
    return PlanarView(
        index=i,
        name=plane.name,
        final=final,
        unit=unit,
        c=c,
        h=h,
        w=w,
        o=o,
        oh=oh,
        ow=ow,
        kh=kh,
        kw=kw,
        ph=ph,
        pw=pw,
        nw=words(c),
        onw=words(o),
        planes=nib.shape[1],
        wp=wp,
        hp=hp,
        q=q,
        qmax=qmax,
        ps=ps,
        y_lo=min(ph, oh),
        y_hi=max(min(ph, oh), min(oh, h - kh + 1 + ph)),
        x_lo=min(pw, ow),
        x_hi=max(min(pw, ow), min(ow, w - kw + 1 + pw)),
        start=tuple(start),
        off=tuple(int(v) for v in off),
        tab=tuple(int(v) for v in tab),
        nnz_tap=tuple(int(v) for v in op.weight.sum(axis=1).reshape(-1)),
        nnz=tuple(int(v) for v in op.weight.reshape(o, -1).sum(axis=1)),
        t=tuple(int(v) for v in plane.t),
        s=tuple(int(v) for v in plane.s),
        c0=tuple(cc),
        exact_double=bound < 2**53,
        src=src,
        dst=dst,
    )


def _generic(
    i: int, op: O.SumConv2d, plane: O.Threshold | O.OutputAffine, t_in, out_hw, src: str, dst: str
) -> ConvView:
    o, c, kh, kw = op.weight.shape
    final = isinstance(plane, O.OutputAffine)
    if t_in.kind is Kind.BIT:
        wk = "bits"
        wts = tuple(_hex(v) for v in _pack_channels(op.weight.transpose(0, 2, 3, 1)))
        nnz = tuple(int(v) for v in op.weight.sum(axis=1).reshape(-1))
    else:
        wk = "codes"  # 0/1 as [c][ky][kx][o]: S for all o vectorizes
        wts = tuple(str(int(v)) for v in op.weight.reshape(o, -1).T.reshape(-1))
        nnz = ()
    return ConvView(
        i,
        plane.name,
        wk,
        final,
        c,
        t_in.shape[1],
        t_in.shape[2],
        o,
        *out_hw,
        kh,
        kw,
        *op.stride,
        *op.padding,
        words(c),
        words(o),
        wts,
        nnz,
        tuple(int(v) for v in plane.t),
        tuple(int(v) for v in plane.s),
        tuple(int(v) for v in plane.c) if not final else (0,) * o,
        src,
        dst,
    )


def lower(graph: Graph, name: str, schedule: str = "auto", unit: str = "nibble") -> ModelView:
    if schedule not in SCHEDULES:
        raise BncError(f"unknown schedule '{schedule}'; choose one of: {', '.join(SCHEDULES)}")
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
    layers: list[ConvView | PlanarView | PoolView] = []
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
            if choose(op, t_in.kind, (oh, ow), schedule, unit) == "planar":
                layers.append(_planar(i, op, plane, t_in, (oh, ow), cur, dst, unit))
            else:
                layers.append(_generic(i, op, plane, t_in, (oh, ow), cur, dst))
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
    planar = [v for v in layers if isinstance(v, PlanarView)]
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
        needs_popcount=any(
            isinstance(v, PlanarView) or (isinstance(v, ConvView) and v.kind == "bits")
            for v in layers
        ),
        layers=tuple(layers),
        nib_size=max((v.planes * v.ps for v in planar), default=0),
        pc_size=max((v.ps for v in planar), default=0),
        q_size=max((v.qmax for v in planar), default=0),
        out_channels=o,
        out_per_channel=out_t.size // o,
        out_scale=tuple(float(v).hex() for v in out_op.scale),
        out_bias=tuple(float(v).hex() for v in out_op.bias),
    )
