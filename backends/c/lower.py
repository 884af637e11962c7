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

Three schedules compute a convolution (``schedule`` picks one per layer, see ``choose``):

* ``generic`` (any stride): one output pixel at a time, the window's words gathered once (zeros
  on padded taps), then ``popcount(window & b[o])`` for 16 output channels per vector
  (``bnc_popdot``: AVX-512 VPOPCNTDQ, AVX2 nibble tables, NEON ``vcnt``); weights are laid
  ``[k][o]`` so one window word meets 16 channels' words in one load. The plane
  ``t*T + s*S + c`` is formed for all channels at once in int32 or double where every
  partial sum is provably exact there (``plane_form``), else in int64 one channel at a time.
  Over codes held as integers (stride 2 and up), the window's codes against 0/1 weights;
* ``planar`` (stride 1, bit input): the layer's input is re-laid as *nibble planes*, one byte
  per pixel per four channels, over the zero-padded image flattened row by row, so that tap
  ``(ky, kx)`` of the output at flat position ``q`` is the input at ``q + ky*Wp + kx``. Each
  nonzero 4-bit piece of ``b[o]`` (an *entry*: plane, tap, nibble ``m``) adds
  ``popcount(m & nibble)`` over a whole vector of positions with one table lookup
  (``pshufb`` / ``vqtbl1q_u8``) and one add. Zero nibbles have no entry, so a zero kernel costs
  nothing and a one-hot kernel one lookup per vector; ``T`` is counted once per position and
  shared by all output channels;
* ``code-dot`` (codes of a byte, any stride: the 8-bit first layer): the generic kernel with
  the input as zero-padded byte planes; four taps of a window row are one 32-bit broadcast
  against 0/1 weight bytes of 16 output channels (``bnc_dotq``: AVX-512 VNNI ``vpdpbusd``,
  else ``pmaddubsw`` + ``pmaddwd``), ``T`` one more lane of ones, then the same plane;
* ``code-planar`` (stride 1, codes held as integers: the 8-bit first layer): each input channel
  zero-padded into a flat plane, and each one of ``b[o]`` adds that plane shifted by its tap
  over all positions (a one-hot kernel is one vector add per vector of positions, a zero
  kernel nothing); ``T`` once per position by row sums.

``auto`` ranks generic against planar with ``layer_cost`` for each vector path the target's
compiler may take (host: AVX-512 with VPOPCNTDQ, and AVX2); where the two paths rank them
differently the layer is emitted in both schedules under ``#if defined(BNC_VPOPCNT)``
(``AltView``), so the emitted file does not depend on the machine that generated it.
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
from bnc.ir.passes.narrow import NarrowThresholds

# The widest vector block the planar kernel may use (4 vectors of 64 bytes, AVX-512): buffers
# are sized for it, so one emitted source serves every instruction set.
BLOCK_MAX = 256
SCHEDULES = ("auto", "generic", "planar")
LANES = 16  # the generic kernel's output channels per vector (bnc_popdot16)
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
    weights: tuple[str, ...]  # bits: hex words [m][k][op]; codes: 0/1 [m][c][ky][kx][o]
    nnz: tuple[int, ...]  # bits: ones per tap [m][ky][kx][o]
    t: tuple[int, ...]
    s: tuple[int, ...]  # [m][o]
    c0: tuple[int, ...]
    src: str
    dst: str
    op: int  # bits: output channels padded to a multiple of LANES (the weights' row length)
    # bits out: the plane in "i32" (every partial sum below 2^31) or "f64" (below 2^53, so exact
    # in double), vectorized over output channels; "": int64, one channel at a time
    fast: str
    t32: tuple[int, ...]  # fast (see plane_form): plane = t*T + sum_g cf*pop_g + k (interior)
    cf32: tuple[int, ...]  # [g][op]: s * wj, the coefficient of popcount(window_j & b_m[o])
    so32: tuple[int, ...]  # [m][op]: s * off, of each valid one of b_m[o] (border pixels)
    c32: tuple[int, ...]  # the threshold constant (-1 on padded channels)
    k32: tuple[int, ...]  # c + s * off * nnz[o]: the interior constant
    nnz_total: tuple[int, ...]  # bits: ones of each mask, [m][o]
    # input "dot" (code-dot: codes of at most 8 bits as bytes against 0/1 weights, four taps at
    # once): the byte offset of the stored codes (x + xoff: unsigned), the zero-padded byte
    # planes' rows and row length, each quad's offset in them ((c * hp + ky) * xw + 4j: taps
    # kx = 4j .. 4j + 3 of row ky), the lanes (OP per mask, then the window's sum T at tlane)
    xoff: int = 0
    hp: int = 0
    xw: int = 0
    qo: tuple[int, ...] = ()
    lanes: int = 0
    tlane: int = 0

    kind = ViewKind.CONV

    @property
    def parallel(self) -> bool:
        """Threads share it (pixels or output channels); over codes, thread 0 runs it."""
        return self.input in ("bits", "dot")


class _Entries:
    """What the two planar views share: their entries (``off``), and that threads split them."""

    off: tuple[int, ...]
    parallel = True

    @property
    def entries(self) -> int:
        return len(self.off)


@dataclass(frozen=True)
class PlanarView(_Entries, Geometry):
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


@dataclass(frozen=True)
class CodePlanarView(_Entries, Geometry):
    """A stride-1 convolution over codes held as integers (the 8-bit first layer): each input
    channel zero-padded into a flat plane (zero is exact padding in the value domain), and for
    each output channel ``S[q] = sum of plane[q + off]`` over the ones of ``b[o]`` (one add of
    a vector of positions per one, none for a zero), ``T`` counted once per position."""

    index: int
    name: str
    plane_out: bool
    add: str
    bit_adds: tuple[BitAddView, ...]
    src_type: str
    xt: str  # C type of the padded planes and the sums (int16_t where every sum fits)
    ft: str  # C type the plane is formed in: int32_t, double (exact below 2^53) or int64_t
    nw: int
    onw: int
    wp: int
    hp: int
    q: int  # flat output positions, OH * WP
    ps: int  # plane stride (every read q + off < ps)
    masks: int
    uses_t: bool
    start: tuple[int, ...]  # entries of (m, o): start[m * O + o] .. start[m * O + o + 1]
    off: tuple[int, ...]  # entry: c * ps + ky * wp + kx
    t: tuple[int, ...]
    s: tuple[int, ...]  # [m][o]
    c0: tuple[int, ...]
    codes: CodesOut | None
    src: str
    dst: str

    kind = ViewKind.CODE_PLANAR


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


@dataclass(frozen=True)
class AltView:
    """One layer in two schedules: ``a`` where the C preprocessor condition ``cond`` holds when
    the file is compiled (the vector path the cost model ranked them for), else ``b``. Both
    have the same signature; everything else is read from ``a``."""

    cond: str
    a: ConvView | PlanarView
    b: ConvView | PlanarView

    kind = ViewKind.ALT

    def __getattr__(self, name: str):
        return getattr(self.a, name)


# the x86 vector paths the host target ranks for, and the condition of the first
HOST_ISAS = ("avx512", "avx2")
ALT_COND = "defined(BNC_VPOPCNT)"

Layer = ConvView | PlanarView | CodePlanarView | PoolView | ConcatView | SumPoolView | AltView


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
    xp_words: int  # int32s of the code-planar schedule's padded planes (0: none)
    xq_size: int  # its flat positions (the largest layer's PS)
    xs_size: int  # int32s of its sums (masks * PS)
    xcol_size: int  # its output columns (output bit planes * OH * OW)
    threads: int  # the most threads (BNC_THREADS_MAX); 1: single-threaded, no pthreads
    pc_size: int  # padded positions of the largest planar input (all its bit planes)
    q_size: int  # flat output positions of the largest planar layer
    pab_size: int  # its per-group counts (groups * positions)
    col_size: int  # its output columns (output bit planes * positions)

    @property
    def nibble_table(self) -> tuple[tuple[int, ...], ...]:
        """``[m][n] = popcount(m & n)`` for 4-bit ``m`` and ``n``."""
        return tuple(tuple(bin(a & b).count("1") for b in range(16)) for a in range(16))

    def stride(self, n: int, size: int) -> int:
        """Elements between two threads' slices of a work buffer of ``n`` elements of ``size``
        bytes: rounded up to a cache line, and one line more (so no two threads write one
        line). One thread: ``n``."""
        if self.threads == 1:
            return n
        line = 64 // size
        return _round_up(n, line) + line

    @property
    def simd(self) -> bool:
        """Some layer uses bnc_simd.h: a planar layer, or a generic one over bits."""
        return bool(self.nib_size) or any(
            isinstance(v, AltView) or (isinstance(v, ConvView) and v.input in ("bits", "dot"))
            for v in self.layers
        )

    @property
    def nibble_tables(self) -> bool:
        """Some planar layer uses nibble entries (and so the lookup tables)."""
        return any(
            isinstance(w, PlanarView) and w.unit == "nibble"
            for v in self.layers
            for w in ((v.a, v.b) if isinstance(v, AltView) else (v,))
        )


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


# The cost model: seconds per layer on one core, per vector path ("avx512": AVX-512 with
# VPOPCNTDQ; "avx2": AVX2 without it, the nibble-table paths; "neon"; "portable"), from counts
# of each kernel's inner steps times a per-step time fitted to `make bench`'s per-layer table
# (bench/layers.py, which prints the predictions beside the measured times and fails on a
# wrong ranking).
VECTOR_BYTES = {"avx512": 64, "avx2": 32, "neon": 16, "portable": 16}
# generic: ns per bnc_popdot step (one window word against 16 output channels), and per pixel
POPDOT_NS = {"avx512": 0.64, "avx2": 1.95, "neon": 3.0, "portable": 12.0}
PIXEL_NS = {"avx512": 11.6, "avx2": 11.6, "neon": 30.0, "portable": 40.0}
SCALAR_PLANE_NS = 1.2  # per (output channel, group) of the int64 plane (no vector plane)
# planar: ns per input word re-laid into nibble planes, per entry vector (a lookup or count and
# an add over VECTOR_BYTES positions), per (output channel, vector of positions) of the plane
# and the flushes, and per (output channel, border position: its taps counted one by one)
RELAYOUT_NS = {"avx512": 9.6, "avx2": 4.4, "neon": 6.0, "portable": 8.0}
ENTRY_NS = {"avx512": 0.69, "avx2": 0.62, "neon": 1.5, "portable": 8.0}
CHANNEL_VECTOR_NS = {"avx512": 11.2, "avx2": 19.5, "neon": 20.0, "portable": 30.0}
BORDER_NS = {"avx512": 9.4, "avx2": 5.8, "neon": 15.0, "portable": 15.0}
# code-dot: ns per pixel, per (quad, block of 16 lanes) of bnc_dotq, per block of the int32
# vector plane (twice that in double); code-planar: per (entry, vector of positions) and per
# (output channel, vector) of the plane; both: per (output channel, pixel) of a scalar int64
# plane (codes or planes out), per threshold of a code. Fitted to the first layers of the
# bundled, residual, W2A2 and CNV models (50 % and 95 % alpha) on both x86 paths; NEON and
# portable are guesses (NEON keeps code-planar: bnc_dotq is scalar there).
DOT_PIXEL_NS = {"avx512": 2.0, "avx2": 2.0, "neon": 10.0, "portable": 10.0}
DOT_QUAD_NS = {"avx512": 0.18, "avx2": 0.5, "neon": 8.0, "portable": 8.0}
DOT_PLANE_NS = {"avx512": 1.6, "avx2": 2.4, "neon": 6.0, "portable": 6.0}
CP_ENTRY_NS = {"avx512": 0.54, "avx2": 0.6, "neon": 1.5, "portable": 8.0}
CP_CHANNEL_NS = {"avx512": 13.2, "avx2": 14.0, "neon": 20.0, "portable": 30.0}
CODE_SCALAR_NS, CODE_THRESHOLD_NS = 1.2, 0.5


def entries_count(step: ConvStep, unit: str) -> int:
    """The planar schedule's entries: nonzero weight nibbles or bytes, over every mask and
    input bit plane."""
    per_plane = sum(int(np.count_nonzero(entries_of(mk.weight, unit))) for mk in step.masks)
    return per_plane * step.src.planes


def layer_cost(step: ConvStep, schedule: str, isa: str) -> float | None:
    """Estimated seconds of one convolution in ``schedule`` on vector path ``isa``; None where
    the schedule does not apply (both need packed bits in; planar, stride 1)."""
    g = step.geo
    pix, taps = g.oh * g.ow, g.kh * g.kw
    p, m = step.src.planes, len(step.masks)
    groups = m * p
    if not step.packed_in:
        return _code_cost(step, schedule, isa)
    if schedule == "generic":
        k = taps * words(g.c)
        op = _round_up(g.o, LANES)
        fast = bool(plane_form(step))
        plane = 0.0 if fast else g.o * (groups + 2) * SCALAR_PLANE_NS
        ns = pix * (PIXEL_NS[isa] + groups * k * (op // LANES) * POPDOT_NS[isa] + plane)
        return ns * 1e-9
    if (g.sh, g.sw) != (1, 1):
        return None
    unit = "nibble" if isa in ("avx512", "avx2") else "byte"
    vectors = -(-g.oh * (g.w + 2 * g.pw) // VECTOR_BYTES[isa])
    relayout = p * g.h * g.w * words(g.c) * RELAYOUT_NS[isa]
    entries = entries_count(step, unit) * vectors * ENTRY_NS[isa]
    plane = g.o * vectors * (groups + 1) / 2 * CHANNEL_VECTOR_NS[isa]
    border = pix - max(0, g.oh - 2 * g.ph) * max(0, g.ow - 2 * g.pw)
    return (relayout + entries + plane + g.o * border * BORDER_NS[isa]) * 1e-9


def _code_cost(step: ConvStep, schedule: str, isa: str) -> float | None:
    """``layer_cost`` of a layer over integer codes: code-dot (codes of a byte), code-planar
    (stride 1), else None."""
    g = step.geo
    pix, m = g.oh * g.ow, len(step.masks)
    codes = step.code_out
    scalar = CODE_SCALAR_NS * (m + 2) + (CODE_THRESHOLD_NS * len(codes.c) if codes else 0.0)
    if schedule == "code-dot":
        xoff = dot_offset(step)
        if xoff is None:
            return None
        op, _, lanes = _dot_lanes(g.o, m)
        blocks = lanes // LANES
        quads = g.c * g.kh * -(-g.kw // 4)
        fast = _dot_form(step, 0, xoff)
        plane = (op // LANES) * DOT_PLANE_NS[isa] * (2 if fast == "f64" else 1) if fast else 0.0
        ns = pix * (DOT_PIXEL_NS[isa] + quads * blocks * DOT_QUAD_NS[isa] + plane)
        return (ns + (0.0 if fast else pix * g.o * scalar)) * 1e-9
    if schedule == "code-planar" and (g.sh, g.sw) == (1, 1):
        vectors = -(-g.oh * (g.w + 2 * g.pw) // (VECTOR_BYTES[isa] // 2))
        ones = sum(int(mk.weight.sum()) for mk in step.masks)
        plain = step.mode is Mode.THRESHOLD and not step.adds and not step.bit_adds
        ns = ones * vectors * CP_ENTRY_NS[isa] + g.o * m * vectors * CP_CHANNEL_NS[isa]
        return (ns + (0.0 if plain else pix * g.o * scalar * 0.25)) * 1e-9
    return None


def choose(step: ConvStep, schedule: str, isa: str = "avx512") -> str:
    """The schedule of one convolution. Over integer codes: ``code-dot`` where they fit a byte
    (any stride; ``generic`` asks for it), ``code-planar`` at stride 1 (``planar`` asks for
    it), ``auto`` the cheaper by ``layer_cost``, else the generic loop over codes. Over bits:
    ``planar`` needs stride 1; ``auto`` takes the cheaper by ``layer_cost`` on vector path
    ``isa``."""
    g = step.geo
    if not step.packed_in:
        dot = layer_cost(step, "code-dot", isa)
        cplanar = layer_cost(step, "code-planar", isa)
        if schedule == "generic" or cplanar is None:
            return "code-dot" if dot is not None else "generic"
        if schedule == "planar" or dot is None or isa not in ("avx512", "avx2"):
            return "code-planar"  # (bnc_dotq is scalar but on x86)
        return "code-dot" if dot < cplanar else "code-planar"
    if (g.sh, g.sw) != (1, 1):
        return "generic"
    if schedule != "auto":
        return schedule
    planar = layer_cost(step, "planar", isa)
    generic = layer_cost(step, "generic", isa)
    assert planar is not None and generic is not None
    return "planar" if planar < generic else "generic"


def steps_of(graph: Graph) -> list[ConvStep]:
    """The convolution steps of a lowered graph as this target schedules them."""
    sched = core_schedule(
        NarrowThresholds().apply(graph), merge_masks=True, code_planes=CODE_PLANES
    )
    return [s for s in sched.steps if isinstance(s, ConvStep)]


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


def plane_bound(step: ConvStep, acc_bound: int = 0) -> int:
    """A bound on every partial sum of a step's plane, term by term: t*T, each group's
    s*wj*pop, the taps' offset, c, the shortcuts' s, and the partial plane it adds
    (``acc_bound``)."""
    g = step.geo
    n = g.c * g.kh * g.kw
    if step.packed_in:
        off, wj = step.src.tap_offset, step.src.plane_weights
        vmax = max(abs(off), abs(off + sum(wj)))
        per_s = sum(abs(w) for w in wj) + 2 * abs(off)  # pops, and the offset counted twice
    else:
        vmax = max(abs(step.src.lo), abs(step.src.hi))
        per_s = vmax
    c = step.c if step.mode is Mode.THRESHOLD else (0,) * g.o
    shortcuts = [max(abs(v) for v in b.s) * (1 if b.src.storage is Storage.BITS else
                 max(abs(b.src.lo), abs(b.src.hi))) for b in step.bit_adds]  # fmt: skip
    worst = max(
        abs(step.t[k]) * n * vmax + sum(abs(mk.s[k]) for mk in step.masks) * n * per_s
        + abs(c[k])
        for k in range(g.o)
    )  # fmt: skip
    if step.points:  # 1x1 branches computed in place: not bounded here
        return 1 << 62
    return worst + sum(shortcuts) + acc_bound


def plane_form(step: ConvStep, acc_bound: int = 0) -> str:
    """The generic bit kernel's vector plane type: "i32" or "f64" where every partial sum is
    exact in it and the step thresholds to bits (identity shortcuts of bits and a partial plane
    added included), else "" (int64, one channel at a time)."""
    simple = step.mode is Mode.THRESHOLD and all(
        b.src.storage is Storage.BITS for b in step.bit_adds
    )
    bound = plane_bound(step, acc_bound)
    return "" if not simple else "i32" if bound < 2**31 else "f64" if bound < 2**53 else ""


def _fast_plane(step: ConvStep, op: int, acc_bound: int, dot_off: int | None = None):
    """The generic bit kernel's vector plane (``plane_form``) and its coefficients, per
    output channel padded to ``op``: t, cf [g][op] (g = mask * planes + input plane: s*wj),
    so [m][op] (s*off: each valid one of mask m), c (-1 on padding), k = c + sum_m so*nnz.
    ``dot_off``: the code-dot kernel's (counts of bytes ``x - dot_off``, one plane)."""
    o = step.geo.o
    fast = plane_form(step, acc_bound) if dot_off is None else _dot_form(step, acc_bound, dot_off)
    if not fast:
        return "", (), (), (), (), ()
    pad = (0,) * (op - o)
    off, wj = (step.src.tap_offset, step.src.plane_weights) if dot_off is None else (dot_off, (1,))
    t32 = (*step.t, *pad)
    cf = tuple(v for mk in step.masks for w in wj for v in (*(s * w for s in mk.s), *pad))
    so = tuple(v for mk in step.masks for v in (*(s * off for s in mk.s), *pad))
    c32 = (*step.c, *(-1,) * (op - o))  # padded channels: plane -1, bit 0
    k32 = list(c32)
    for mk in step.masks:
        for k, nz in enumerate(mk.weight.reshape(o, -1).sum(axis=1)):
            k32[k] += mk.s[k] * off * int(nz)
    return fast, t32, cf, so, c32, tuple(k32)


def dot_offset(step: ConvStep) -> int | None:
    """What the code-dot kernel adds to a code to store it as an unsigned byte (0, or 128 for
    int8 codes); None where the codes do not fit a byte."""
    lo, hi = step.src.lo, step.src.hi
    return 0 if 0 <= lo and hi <= 255 else 128 if -128 <= lo and hi <= 127 else None


def _dot_lanes(o: int, masks: int) -> tuple[int, int, int]:
    """The code-dot kernel's lanes: OP (each mask's channels, padded to LANES), the lane of T
    (the first padding lane, else one block more) and all lanes."""
    op = _round_up(o, LANES)
    tlane = o if o < op else masks * op
    return op, tlane, _round_up(max(masks * op, tlane + 1), LANES)


def _dot_form(step: ConvStep, acc_bound: int, xoff: int) -> str:
    """``plane_form`` for the code-dot kernel, whose counts are of the stored bytes ``x + xoff``
    (up to ``255 * n``) and whose constant takes ``-xoff`` per one of the weights."""
    simple = step.mode is Mode.THRESHOLD and all(
        b.src.storage is Storage.BITS for b in step.bit_adds
    )
    if not simple or step.points:
        return ""
    g = step.geo
    n = g.c * g.kh * g.kw
    vmax = max(abs(step.src.lo), abs(step.src.hi))
    shortcuts = sum(max(abs(v) for v in b.s) for b in step.bit_adds)
    worst = max(
        abs(step.t[k]) * n * vmax + sum(abs(mk.s[k]) for mk in step.masks) * n * (255 + xoff)
        + abs(step.c[k])
        for k in range(g.o)
    )  # fmt: skip
    bound = worst + shortcuts + acc_bound
    return "i32" if bound < 2**31 else "f64" if bound < 2**53 else ""


def _code_dot(
    step: ConvStep, src: str, dst: str, add: str, bit_adds: tuple[BitAddView, ...], src_type: str,
    acc_bound: int,
) -> ConvView:  # fmt: skip
    """The code-dot kernel: the generic kernel with the window's codes as bytes, four taps of a
    row to one 32-bit broadcast, against 0/1 weight bytes of 16 lanes at a time (AVX-512 VNNI
    ``vpdpbusd``, or ``pmaddubsw`` + ``pmaddwd``); ``T`` is one more lane of ones."""
    g = step.geo
    o, masks = g.o, step.masks
    xoff = dot_offset(step)
    assert xoff is not None
    op, tlane, lanes = _dot_lanes(o, len(masks))
    hp, wp = g.h + 2 * g.ph, g.w + 2 * g.pw
    jq = -(-g.kw // 4)
    xw = max(wp, (g.ow - 1) * g.sw + 4 * jq)
    qo = tuple(
        (c * hp + ky) * xw + 4 * j for c in range(g.c) for ky in range(g.kh) for j in range(jq)
    )
    w = np.zeros((len(qo), lanes, 4), dtype=np.int8)
    for q, (c, ky, j) in enumerate(
        (c, ky, j) for c in range(g.c) for ky in range(g.kh) for j in range(jq)
    ):
        kx = slice(4 * j, min(4 * j + 4, g.kw))
        n = kx.stop - kx.start
        for m, mk in enumerate(masks):
            w[q, m * op : m * op + o, :n] = mk.weight[:, c, ky, kx]
        w[q, tlane, :n] = 1
    return _conv_view(
        step, src, dst, add, bit_adds, src_type, op, _fast_plane(step, op, acc_bound, -xoff),
        input="dot", planes_in=1, wj=(1,), off=-xoff,
        weights=tuple(str(int(v)) for v in w.reshape(-1)), nnz=(),
        nnz_total=tuple(int(v) for mk in masks for v in mk.weight.reshape(o, -1).sum(axis=1)),
        xoff=xoff, hp=hp, xw=xw, qo=qo, lanes=lanes, tlane=tlane,
    )  # fmt: skip


def _conv_view(
    step: ConvStep, src: str, dst: str, add: str, bit_adds: tuple[BitAddView, ...], src_type: str,
    op: int, fast_plane: tuple, **kernel,
) -> ConvView:  # fmt: skip
    """The generic kernel's view: what every input form shares, the vector plane
    (``_fast_plane``'s tuple) and the input form's own fields (``kernel``)."""
    fast, t32, cf32, so32, c32, k32 = fast_plane
    return ConvView(
        **step.view_fields(),
        src_type=src_type,
        codes=CodesOut.of(step),
        add=add,
        bit_adds=bit_adds,
        nw=words(step.geo.c),
        onw=words(step.geo.o),
        masks=len(step.masks),
        t=step.t,
        s=tuple(v for mk in step.masks for v in mk.s),
        c0=step.c,
        src=src,
        dst=dst,
        op=op,
        fast=fast,
        t32=t32,
        cf32=cf32,
        so32=so32,
        c32=c32,
        k32=k32,
        **kernel,
    )


def _code_planar(
    step: ConvStep, src: str, dst: str, add: str, bit_adds: tuple[BitAddView, ...], src_type: str,
    acc_bound: int,
) -> CodePlanarView:  # fmt: skip
    g = step.geo
    wp, hp = g.w + 2 * g.pw, g.h + 2 * g.ph
    q = g.oh * wp
    ps = _round_up(max(q + (g.kh - 1) * wp + g.kw - 1, hp * wp), 64)
    start, off = [0], []
    for mk in step.masks:
        for k in range(g.o):
            c, ky, kx = np.nonzero(mk.weight[k])
            off += (c * ps + ky * wp + kx).tolist()
            start.append(len(off))
    vmax = max(abs(step.src.lo), abs(step.src.hi))
    n = g.c * g.kh * g.kw
    xt = "int16_t" if n * vmax < 2**15 else "int32_t"
    bound = plane_bound(step, acc_bound)
    ft = "int32_t" if bound < 2**31 else "double" if bound < 2**53 else "int64_t"
    return CodePlanarView(
        **step.view_fields(),
        add=add,
        bit_adds=bit_adds,
        src_type=src_type,
        xt=xt,
        ft=ft,
        nw=words(g.c),
        onw=words(g.o),
        wp=wp,
        hp=hp,
        q=q,
        ps=ps,
        masks=len(step.masks),
        uses_t=any(step.t),
        start=tuple(start),
        off=tuple(int(v) for v in off),
        t=step.t,
        s=tuple(v for mk in step.masks for v in mk.s),
        c0=step.c,
        codes=CodesOut.of(step),
        src=src,
        dst=dst,
    )


def _generic(
    step: ConvStep,
    src: str,
    dst: str,
    add: str,
    bit_adds: tuple[BitAddView, ...],
    src_type: str,
    acc_bound: int = 0,
) -> ConvView:
    o = step.geo.o
    masks = step.masks
    fast = ""
    t32 = cf32 = k32 = c32 = so32 = ()
    op = _round_up(o, LANES)
    if step.packed_in:
        wk = "bits"
        g = step.geo
        taps, nw = g.kh * g.kw, words(g.c)
        # [m][k][OP]: word k = (ky * KW + kx) * NW + j of the window, output channels padded
        # to OP with zero words, so that LANES output channels are one vector
        wts_l: list[str] = []
        for mk in masks:
            packed = np.array(_pack_channels(mk.weight.transpose(0, 2, 3, 1)), dtype=np.uint64)
            cols = np.zeros((taps * nw, op), dtype=np.uint64)
            cols[:, :o] = packed.reshape(o, taps * nw).T
            wts_l += [_hex(v) for v in cols.reshape(-1)]
        wts = tuple(wts_l)
        # ones per tap as [m][tap][o]: a border pixel sums its valid taps for all o at once
        nnz = tuple(
            int(v) for mk in masks for v in mk.weight.sum(axis=1).reshape(o, -1).T.reshape(-1)
        )
        fast, t32, cf32, so32, c32, k32 = _fast_plane(step, op, acc_bound)
    else:
        wk = "codes"  # 0/1 as [m][c][ky][kx][o]: S for all o vectorizes
        wts = tuple(str(int(v)) for mk in masks for v in mk.weight.reshape(o, -1).T.reshape(-1))
        nnz = ()
    nnz_total = (
        tuple(int(v) for mk in masks for v in mk.weight.reshape(o, -1).sum(axis=1))
        if step.packed_in
        else ()
    )
    return _conv_view(
        step, src, dst, add, bit_adds, src_type, op, (fast, t32, cf32, so32, c32, k32),
        input=wk, planes_in=step.src.planes,
        wj=step.src.plane_weights if step.packed_in else (1,),
        off=step.src.tap_offset if step.packed_in else 0,
        weights=wts, nnz=nnz, nnz_total=nnz_total,
    )  # fmt: skip


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


def lower(
    graph: Graph, name: str, schedule: str = "auto", unit: str = "nibble", threads: int = 1
) -> ModelView:
    """The C view of a lowered graph; ``threads``: the most threads the emitted code runs (the
    worker pool and per-thread work space; 1: no threads at all)."""
    if schedule not in SCHEDULES:
        raise BncError(f"unknown schedule '{schedule}'; choose one of: {', '.join(SCHEDULES)}")
    # single-layer thresholds with the fewest-bit coefficients that decide exactly alike
    # (bnc.ir.narrow): the plane then fits int32, 16 lanes instead of 8 doubles
    sched: Schedule = core_schedule(
        NarrowThresholds().apply(graph), merge_masks=True, code_planes=CODE_PLANES
    )
    plan = plan_memory(sched, _pool_of, Tensor.nbytes)
    inp = sched.input
    code_type = _code_type(inp.dst.lo, inp.dst.hi) if not inp.sign else "int16_t"

    def ptr(t: Tensor) -> str:
        if t.output:
            return "bnc_out"
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
    bounds: dict[int, int] = {}  # a partial plane's bound on its magnitude, by tensor id
    for step in sched.steps:
        if isinstance(step, ConvStep):
            acc_bound = bounds.get(step.acc_in.id, 1 << 62) if step.acc_in is not None else 0
            bounds[step.dst.id] = plane_bound(step, acc_bound)
            add = ptr(step.acc_in) if step.acc_in is not None else ""
            bits_ = tuple(b.view(ptr(b.src)) for b in step.bit_adds)
            src, dst = ptr(step.src), ptr(step.dst)

            def view(how: str) -> Layer:
                if how == "planar":
                    return _planar(step, src, dst, add, bits_, unit)  # noqa: B023
                if how == "code-planar":
                    return _code_planar(step, src, dst, add, bits_, elem_type(step.src), acc_bound)  # noqa: B023
                if how == "code-dot":
                    return _code_dot(step, src, dst, add, bits_, elem_type(step.src), acc_bound)  # noqa: B023
                return _generic(step, src, dst, add, bits_, elem_type(step.src), acc_bound)  # noqa: B023

            isas = HOST_ISAS if unit == "nibble" else ("neon",)
            hows = [choose(step, schedule, isa) for isa in isas]
            if len(set(hows)) == 1:
                layers.append(view(hows[0]))
            else:
                layers.append(AltView(ALT_COND, view(hows[0]), view(hows[1])))  # type: ignore[arg-type]
        elif isinstance(step, PoolStep):
            layers.append(pool_view(step, ptr, elem_type))
        elif isinstance(step, ConcatStep | SumPoolStep):
            layers.append(data_view(step, ptr, elem_type))
    every = [w for v in layers for w in ((v.a, v.b) if isinstance(v, AltView) else (v,))]
    planar = [v for v in every if isinstance(v, PlanarView)]
    cplanar = [v for v in every if isinstance(v, CodePlanarView)]
    dots = [v for v in every if isinstance(v, ConvView) and v.input == "dot"]
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
            for v in every
        ),
        needs_round_shift=any(
            isinstance(v, ConvView | PlanarView | CodePlanarView)
            and v.codes is not None
            and v.codes.mode == "requant"
            for v in every
        ),
        layers=tuple(layers),
        threads=threads,
        nib_size=max((v.planes_in * v.planes * v.ps for v in planar), default=0),
        xp_words=max(
            [(v.c * v.ps * (1 if v.xt == "int16_t" else 2) + 1) // 2 for v in cplanar]
            + [(v.c * v.hp * v.xw + 3) // 4 for v in dots],
            default=0,
        ),
        xq_size=max((v.ps for v in cplanar), default=0),
        xs_size=max((v.masks * v.ps for v in cplanar), default=0),
        xcol_size=max(
            (max(1, v.codes.planes if v.codes else 1) * v.oh * v.ow for v in cplanar), default=0
        ),
        pc_size=max((v.planes_in * v.ps for v in planar), default=0),
        q_size=max((v.qmax for v in planar), default=0),
        pab_size=max((v.groups * v.qmax for v in planar), default=0),
        col_size=max(
            (max(1, v.codes.planes if v.codes else 1) * v.qmax for v in planar), default=0
        ),  # fmt: skip
    )
