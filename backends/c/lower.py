"""Lowered IR → the C view model: every decision the templates need, made here.

Layout of the portable target:

* the float32 input is read in PyTorch's (C, H, W) order; the input quantizer's codes are
  ``int16_t`` (``int32_t`` for wide ranges) in (C, H, W) order;
* bit tensors are packed per pixel, ``[H][W][words]`` of ``uint32_t``: channel ``c`` is bit
  ``c % 32`` of word ``c / 32``; padding bits are zero in activations and weights, so they
  never count in a popcount;
* every bit tensor and every code tensor after the input (a global average pool's sums, int32)
  lives in one static arena of words, the partial planes of residual layers in one of int64,
  both placed by the core's liveness plan (``bnc.backends.core.plan_memory``; no malloc);
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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bnc.backends.core import (
    WORD,
    BitAddView,
    ConcatStep,
    ConvStep,
    Geometry,
    Mode,
    ModelIO,
    PoolStep,
    Schedule,
    Storage,
    SumPoolStep,
    Tensor,
    ViewKind,
    plan_memory,
    words,
)
from bnc.backends.core import schedule as core_schedule
from bnc.errors import BncError
from bnc.ir.graph import Graph

# The widest vector block the planar kernel may use (4 vectors of 64 bytes, AVX-512): buffers
# are sized for it, so one emitted source serves every instruction set.
BLOCK_MAX = 256
SCHEDULES = ("auto", "generic", "planar")
CODE_PLANES = 4  # codes of up to 4 bits are held as bit planes (popcounts), wider as integers


@dataclass(frozen=True)
class CodesOut:
    """What a layer that writes codes needs: ``mode`` "multi" (``thr``: [l][o] thresholds,
    ``nthr`` of them, the code ``qlo + passed``) or "requant" (``c``, ``shift``: the
    round-half-even shift, clamp to ``[qmin, qmax]``, minus ``zp``), and the codes' C type."""

    mode: str
    dst_type: str
    thr: tuple[int, ...]
    nthr: int
    shift: tuple[int, ...]
    qmin: int
    qmax: int
    zp: int
    planes: int  # 0: values (C, H, W); k: k bit planes of u = q - qmin
    plane_words: int  # words of one output bit plane (OH * OW * ONW)

    @property
    def qlo(self) -> int:
        """What the count of passed thresholds is offset by in the stored element."""
        return 0 if self.planes else self.qmin - self.zp

    @property
    def sub(self) -> int:
        """What a requantized code is offset by in the stored element."""
        return self.qmin if self.planes else self.zp

    @staticmethod
    def of(step: ConvStep, dst_type: str | None = None) -> CodesOut | None:
        """``dst_type``: the C type the target stores these codes in (default: narrowest)."""
        co = step.code_out
        if co is None:
            return None
        mode = "multi" if step.mode is Mode.MULTI else "requant"
        thr = tuple(v for row in co.c for v in row)
        d = step.dst
        planes = d.planes if d.storage is Storage.BIT_PLANES else 0
        return CodesOut(mode, dst_type or d.ctype, thr, len(co.c), co.shift, co.qmin,
                        co.qmax, co.zero_point, planes, d.shape[1] * d.shape[2] * d.nw)  # fmt: skip


@dataclass(frozen=True)
class ConvView(Geometry):
    index: int
    name: str
    input: str  # "bits" or "codes": what the input holds
    src_type: str  # C type of an element of the input (codes)
    plane_out: bool  # True: writes the int64 plane (output or a partial sum); False: bits
    codes: CodesOut | None  # writes codes (a k-bit activation) instead of bits
    add: str  # C expression of an int64 plane added before thresholding / writing, or ""
    bit_adds: tuple[BitAddView, ...]  # identity shortcuts of bits: +-s[o] by their bit
    nw: int  # input words per pixel (bits)
    onw: int  # output words per pixel (threshold bits)
    planes_in: int  # packed input: its bit planes (1 for bits)
    wj: tuple[int, ...]  # what a one bit of each input plane adds (2 for bits, 2^j for codes)
    off: int  # a tap's value with all bits zero (-1 for bits, lo for codes)
    masks: int  # binary masks of the layer (multi-level weights), T shared
    weights: tuple[str, ...]  # bits: hex words [m][o][ky][kx][nw]; codes: 0/1 [m][c][ky][kx][o]
    nnz: tuple[int, ...]  # bits: ones per tap [m][o][ky][kx]
    t: tuple[int, ...]
    s: tuple[int, ...]  # [m][o]
    c0: tuple[int, ...]
    src: str
    dst: str

    kind = ViewKind.CONV


@dataclass(frozen=True)
class PlanarView(Geometry):
    """A stride-1 binary convolution in the planar schedule (see the module docstring)."""

    index: int
    name: str
    plane_out: bool
    add: str
    bit_adds: tuple[BitAddView, ...]
    unit: str  # "nibble" (table lookups, x86) or "byte" (AND + popcount, NEON)
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
    planes_in: int  # input bit planes P (1 for bits); nibble planes are P * planes
    wj: tuple[int, ...]  # what a one bit of input plane j adds (2 for bits, 2^j for codes)
    tap_off: int  # a tap's value with all bits zero (-1 for bits, lo for codes)
    masks: int  # M binary masks; an entry group g = m * P + j (mask m over input plane j)
    groups: int
    uses_t: bool  # some channel's T coefficient is nonzero (else T is not counted)
    start: tuple[int, ...]  # entries of (o, g): start[o*G + g] .. start[o*G + g + 1]
    off: tuple[int, ...]  # entry: (j * planes + plane) * ps + ky * wp + kx
    tab: tuple[int, ...]  # entry: the weight nibble (1..15) or byte (1..255) m
    cf: tuple[int, ...]  # [o][g]: the coefficient of group g's count, s[m][o] * wj[j]
    nnz_tap: tuple[int, ...]  # ones of each mask per (m, o, ky, kx), for border positions
    s: tuple[int, ...]  # [m][o]
    k0: tuple[int, ...]  # interior constant per o: c + tap_off * sum_m s[m][o] * nnz[m][o]
    t: tuple[int, ...]
    c0: tuple[int, ...]
    codes: CodesOut | None
    exact_double: bool  # every partial sum of the interior plane is below 2^53 in magnitude
    src: str
    dst: str

    kind = ViewKind.PLANAR

    @property
    def entries(self) -> int:
        return len(self.off)


@dataclass(frozen=True)
class PoolView(Geometry):
    """A max-pool of bits (OR, AND on ``and_words`` channels) or of codes (max, min on
    ``min_mask`` channels; ``src_type`` / ``dst_type`` their C types, ``lo`` / ``hi`` their
    range)."""

    index: int
    name: str
    input: str  # "bits" or "codes"
    planes: int  # codes held as bit planes (input and output): k; 0: integer values
    nw: int
    and_words: tuple[str, ...]
    min_mask: tuple[int, ...]
    min_words: tuple[str, ...]  # bit planes: the min channels packed (none when all take max)
    src_type: str
    dst_type: str
    lo: int
    hi: int
    src: str
    dst: str

    kind = ViewKind.POOL
    schedule = "-"

    @property
    def weight_bytes(self) -> int:
        if self.planes:
            return 4 * len(self.min_words)
        return 4 * len(self.and_words) + (len(self.min_mask) if self.input == "codes" else 0)


@dataclass(frozen=True)
class Part:
    """One source of a concat: its pointer, channels and first output channel."""

    src: str
    c: int
    nw: int
    offset: int

    @property
    def aligned(self) -> bool:
        return self.offset % WORD == 0

    @property
    def word(self) -> int:
        """The output word the source starts in."""
        return self.offset // WORD


@dataclass(frozen=True)
class ConcatView:
    index: int
    name: str
    h: int
    w: int
    onw: int
    parts: tuple[Part, ...]
    dst: str

    @property
    def hw(self) -> int:
        return self.h * self.w

    kind = ViewKind.CONCAT
    schedule = "-"
    weight_bytes = 0


@dataclass(frozen=True)
class SumPoolView:
    """A global average pool: per channel the sum of the map's values (bits as 2a - 1)."""

    index: int
    name: str
    input: str  # "bits", "codes" (integer values) or "planes" (bit planes of u = value - lo)
    src_type: str
    dst_type: str
    c: int
    h: int
    w: int
    nw: int
    planes: int
    lo: int
    src: str
    dst: str

    @property
    def hw(self) -> int:
        return self.h * self.w

    kind = ViewKind.SUM_POOL
    schedule = "-"
    weight_bytes = 0


Layer = ConvView | PlanarView | PoolView | ConcatView | SumPoolView


@dataclass(frozen=True)
class ModelView(ModelIO):
    input_dst: str
    arena_words: int
    plane_words: int  # int64s of the partial-plane arena (0: none)
    code_size: int
    code_type: str  # C type of the input quantizer's codes
    needs_popcount: bool  # some layer reads bits
    needs_round_shift: bool  # some layer requantizes
    layers: tuple[Layer, ...]
    nib_size: int  # bytes of the planar schedule's nibble planes (0: no planar layer)
    pc_size: int  # padded positions of the largest planar input (all its bit planes)
    q_size: int  # flat output positions of the largest planar layer
    pab_size: int  # its per-group counts (groups * positions)
    col_size: int  # its output columns (output bit planes * positions)

    @property
    def nibble_table(self) -> tuple[tuple[int, ...], ...]:
        """``[m][n] = popcount(m & n)`` for 4-bit ``m`` and ``n``."""
        return tuple(tuple(bin(a & b).count("1") for b in range(16)) for a in range(16))

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
    weight: np.ndarray,
    out_hw: tuple[int, int],
    pad: tuple[int, int],
    unit: str = "nibble",
    planes: int = 1,
) -> float:
    """Vector-op estimate of the planar schedule per 16 positions: two ops per nibble entry
    (lookup, add) or three per byte entry (and, count, add), plus about one op per output
    (channel, position) for the threshold and four per input byte for the re-layout; over
    ``planes`` input bit planes. ``weight`` is (O, C, kh, kw) or (M, O, C, kh, kw) masks."""
    masks = weight.reshape(-1, *weight.shape[-4:])
    m, o, c, kh, kw = masks.shape
    q = out_hw[0] * (out_hw[1] + 2 * pad[1])
    entries = sum(int(np.count_nonzero(entries_of(w, unit))) for w in masks) * planes
    per = 2.0 if unit == "nibble" else 3.0
    return per * entries * -(-q // 16) + o * q * m * planes + 4.0 * c * q * planes / 8


def generic_cost(weight: np.ndarray, out_hw: tuple[int, int], planes: int = 1) -> float:
    """Scalar-op estimate of the generic schedule: AND, popcount and add per 32-bit word."""
    masks = weight.reshape(-1, *weight.shape[-4:])
    m, o, c, kh, kw = masks.shape
    return 3.0 * out_hw[0] * out_hw[1] * (m * o + 1) * kh * kw * words(c) * planes


def _all_masks(step: ConvStep) -> np.ndarray:
    return np.stack([mk.weight for mk in step.masks])


def choose(step: ConvStep, schedule: str, unit: str = "nibble") -> str:
    """The schedule of one convolution: ``planar`` needs stride 1 and packed bits in; ``auto``
    takes the cheaper by the two estimates above (docs/benchmarks.md shows them against
    timings)."""
    g = step.geo
    if not step.packed_in or (g.sh, g.sw) != (1, 1):
        return "generic"
    if schedule != "auto":
        return schedule
    out_hw, w, p = (g.oh, g.ow), _all_masks(step), step.src.planes
    planar = planar_cost(w, out_hw, (g.ph, g.pw), unit, p)
    return "planar" if planar < generic_cost(w, out_hw, p) else "generic"


def _planar(
    step: ConvStep, src: str, dst: str, add: str, bit_adds: tuple[BitAddView, ...], unit: str
) -> PlanarView:
    g = step.geo
    o, c, kh, kw = step.weight.shape
    h, w, oh, ow, ph, pw = g.h, g.w, g.oh, g.ow, g.ph, g.pw
    wp, hp = w + 2 * pw, h + 2 * ph
    q = oh * wp
    qmax = _round_up(q, BLOCK_MAX)
    ps = _round_up(max(qmax + (kh - 1) * wp + kw - 1, hp * wp), 64)
    masks = step.masks
    p, wj, tap_off = step.src.planes, step.src.plane_weights, step.src.tap_offset
    nib = [entries_of(mk.weight, unit) for mk in masks]  # each (O, planes, kh, kw)
    planes = nib[0].shape[1]
    start, off, tab, cf = [0], [], [], []
    for k in range(o):
        for mi, mk in enumerate(masks):
            for j in range(p):
                pl, ky, kx = np.nonzero(nib[mi][k])
                off += ((j * planes + pl) * ps + ky * wp + kx).tolist()
                tab += nib[mi][k][pl, ky, kx].tolist()
                start.append(len(off))
                cf.append(mk.s[k] * wj[j])
    nnz = [mk.weight.reshape(o, -1).sum(axis=1) for mk in masks]
    cc = list(step.c)
    k0 = [cc[k] + tap_off * sum(mk.s[k] * int(n[k]) for mk, n in zip(masks, nnz, strict=True))
          for k in range(o)]  # fmt: skip
    # interior plane = t*T + sum_g cf*pab_g + k0, |T| <= taps * C * max|value|, pab_g <= nnz_m
    t_max = c * kh * kw * max(abs(tap_off), abs(tap_off + sum(wj)))
    bound = max(
        abs(step.t[k]) * t_max
        + sum(abs(cf[k * len(masks) * p + mi * p + j]) * int(nnz[mi][k])
              for mi in range(len(masks)) for j in range(p))
        + abs(k0[k])
        for k in range(o)
    )  # fmt: skip
    return PlanarView(
        **step.view_fields(),
        add=add,
        bit_adds=bit_adds,
        unit=unit,
        nw=words(c),
        onw=words(o),
        planes=planes,
        wp=wp,
        hp=hp,
        q=q,
        qmax=qmax,
        ps=ps,
        y_lo=min(ph, oh),
        y_hi=max(min(ph, oh), min(oh, h - kh + 1 + ph)),
        x_lo=min(pw, ow),
        x_hi=max(min(pw, ow), min(ow, w - kw + 1 + pw)),
        planes_in=p,
        wj=wj,
        tap_off=tap_off,
        masks=len(masks),
        groups=len(masks) * p,
        uses_t=any(step.t),
        start=tuple(start),
        off=tuple(int(v) for v in off),
        tab=tuple(int(v) for v in tab),
        cf=tuple(int(v) for v in cf),
        nnz_tap=tuple(int(v) for mk in masks for v in mk.weight.sum(axis=1).reshape(-1)),
        s=tuple(v for mk in masks for v in mk.s),
        k0=tuple(int(v) for v in k0),
        t=step.t,
        c0=tuple(cc),
        codes=CodesOut.of(step),
        exact_double=bound < 2**53 and not step.adds,
        src=src,
        dst=dst,
    )


def _generic(
    step: ConvStep, src: str, dst: str, add: str, bit_adds: tuple[BitAddView, ...], src_type: str
) -> ConvView:
    o = step.geo.o
    masks = step.masks
    if step.packed_in:
        wk = "bits"
        wts = tuple(_hex(v) for mk in masks
                    for v in _pack_channels(mk.weight.transpose(0, 2, 3, 1)))  # fmt: skip
        nnz = tuple(int(v) for mk in masks for v in mk.weight.sum(axis=1).reshape(-1))
    else:
        wk = "codes"  # 0/1 as [m][c][ky][kx][o]: S for all o vectorizes
        wts = tuple(str(int(v)) for mk in masks for v in mk.weight.reshape(o, -1).T.reshape(-1))
        nnz = ()
    return ConvView(
        **step.view_fields(),
        input=wk,
        src_type=src_type,
        codes=CodesOut.of(step),
        add=add,
        bit_adds=bit_adds,
        nw=words(step.geo.c),
        onw=words(o),
        planes_in=step.src.planes,
        wj=step.src.plane_weights if step.packed_in else (1,),
        off=step.src.tap_offset if step.packed_in else 0,
        masks=len(masks),
        weights=wts,
        nnz=nnz,
        t=step.t,
        s=tuple(v for mk in masks for v in mk.s),
        c0=step.c,
        src=src,
        dst=dst,
    )


def data_view(
    step: ConcatStep | SumPoolStep, ptr: Callable[[Tensor], str], elem: Callable[[Tensor], str]
) -> ConcatView | SumPoolView:
    """The view of a data-movement step, for every C dialect: ``ptr`` gives a tensor's C
    expression, ``elem`` the C type of one of its codes."""
    if isinstance(step, ConcatStep):
        parts = tuple(
            Part(ptr(t), t.c, t.nw, off) for t, off in zip(step.srcs, step.offsets, strict=True)
        )
        _, h, w = step.dst.shape
        return ConcatView(step.index, step.name, h, w, step.dst.nw, parts, ptr(step.dst))
    src = step.src
    c, h, w = src.shape
    kind = {Storage.BITS: "bits", Storage.BIT_PLANES: "planes"}.get(src.storage, "codes")
    return SumPoolView(step.index, step.name, kind, elem(src), elem(step.dst), c, h, w,
                       words(c), src.planes, src.lo, ptr(src), ptr(step.dst))  # fmt: skip


def _code_type(qmin: int, qmax: int) -> str:
    return "int16_t" if -(2**15) <= qmin and qmax < 2**15 else "int32_t"


def _pool_of(t: Tensor) -> str | None:
    if t.output or t.storage is Storage.INPUT_CODES:
        return None
    return "planes" if t.storage is Storage.PLANE else "words"


def pool_view(step: PoolStep, ptr: Callable[[Tensor], str], elem: Callable[[Tensor], str]):
    """The view of a max-pool, for every C dialect."""
    bits_ = step.src.storage is Storage.BITS
    mask = tuple(_hex(v) for v in _pack_channels(step.and_mask[None])) if bits_ else ()
    planar = step.src.storage is Storage.BIT_PLANES
    assert planar == (step.dst.storage is Storage.BIT_PLANES)
    return PoolView(
        **step.geo.fields(),
        index=step.index,
        name=step.name,
        input="bits" if bits_ else "codes",
        planes=step.src.planes if planar else 0,
        nw=words(step.geo.c),
        and_words=mask,
        min_mask=tuple(int(v) for v in step.and_mask),
        min_words=tuple(_hex(v) for v in _pack_channels(step.and_mask[None]))
        if planar and step.and_mask.any()
        else (),
        src_type=elem(step.src),
        dst_type=elem(step.dst),
        lo=step.dst.lo,
        hi=step.dst.hi,
        src=ptr(step.src),
        dst=ptr(step.dst),
    )


def lower(graph: Graph, name: str, schedule: str = "auto", unit: str = "nibble") -> ModelView:
    if schedule not in SCHEDULES:
        raise BncError(f"unknown schedule '{schedule}'; choose one of: {', '.join(SCHEDULES)}")
    sched: Schedule = core_schedule(graph, merge_masks=True, code_planes=CODE_PLANES)
    plan = plan_memory(sched, _pool_of, Tensor.nbytes)
    inp = sched.input
    code_type = _code_type(inp.dst.lo, inp.dst.hi) if not inp.sign else "int16_t"

    def ptr(t: Tensor) -> str:
        if t.output:
            return "acc"
        if t.storage is Storage.INPUT_CODES:
            return "bnc_codes"
        if t.storage is Storage.PLANE:
            return f"(bnc_planes + {plan.offset(t) // 8})"
        if t.storage is Storage.CODES:
            return f"(({t.ctype} *)(bnc_arena + {plan.offset(t) // 4}))"
        return f"(bnc_arena + {plan.offset(t) // 4})"

    def elem_type(t: Tensor) -> str:
        return code_type if t.storage is Storage.INPUT_CODES else t.ctype

    layers: list[Layer] = []
    for step in sched.steps:
        if isinstance(step, ConvStep):
            add = ptr(step.acc_in) if step.acc_in is not None else ""
            bits_ = tuple(b.view(ptr(b.src)) for b in step.bit_adds)
            src, dst = ptr(step.src), ptr(step.dst)
            if choose(step, schedule, unit) == "planar":
                layers.append(_planar(step, src, dst, add, bits_, unit))
            else:
                layers.append(_generic(step, src, dst, add, bits_, elem_type(step.src)))
        elif isinstance(step, PoolStep):
            layers.append(pool_view(step, ptr, elem_type))
        elif isinstance(step, ConcatStep | SumPoolStep):
            layers.append(data_view(step, ptr, elem_type))
    planar = [v for v in layers if isinstance(v, PlanarView)]
    c0, h0, w0 = graph.input.shape
    return ModelView(
        **ModelIO.of(graph, sched, name).fields(),
        input_dst=ptr(inp.dst),
        arena_words=max(1, plan.sizes.get("words", 0) // 4),
        plane_words=plan.sizes.get("planes", 0) // 8,
        code_size=c0 * h0 * w0 if not inp.sign else 1,
        code_type=code_type,
        needs_popcount=any(
            isinstance(v, PlanarView) or (isinstance(v, ConvView) and v.input == "bits")
            for v in layers
        ),
        needs_round_shift=any(
            isinstance(v, ConvView | PlanarView)
            and v.codes is not None
            and v.codes.mode == "requant"
            for v in layers
        ),
        layers=tuple(layers),
        nib_size=max((v.planes_in * v.planes * v.ps for v in planar), default=0),
        pc_size=max((v.planes_in * v.ps for v in planar), default=0),
        q_size=max((v.qmax for v in planar), default=0),
        pab_size=max((v.groups * v.qmax for v in planar), default=0),
        col_size=max(
            (max(1, v.codes.planes if v.codes else 1) * v.qmax for v in planar), default=0
        ),  # fmt: skip
    )
