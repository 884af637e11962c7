"""Lowered IR → the microcontroller view model: kernels without heap, OS or popcount instruction.

What differs from the portable C target (``bnc.backends.c.lower``):

* **One static arena.** Every activation tensor and every layer's scratch lives in one
  ``uint32_t`` array, placed by the core's liveness plan (``bnc.backends.core.plan_memory``):
  a tensor is live from the layer that writes it to the last layer that reads it (shortcuts
  and fan-out keep it longer), and buffers whose lives do not meet share bytes. The int64
  partial planes of residual layers live in a second arena of ``int64_t``.
* **Everything constant is packed to the bit** and ``const`` (flash): weights as bits, the
  thresholds narrowed to the fewest bits that decide exactly alike (``bnc.ir.narrow``) and
  stored as int16 or int32, the per-tap ones only for layers with padding.
* **Counting without popcount.** Cortex-M has no popcount instruction (``__builtin_popcount`` is
  a libgcc call). Each word is reduced with three SWAR steps to four byte counts (at most 8
  each) and the byte counts of up to 31 words are added before one reduction (``usada8`` on
  cores with the DSP extension, two masked adds elsewhere): about 11 instructions a word.
* **Two schedules for a binary convolution** (``--schedule``, ``choose``): ``dense`` gathers
  the window once per output position (``T`` is counted there, shared by all output channels),
  then AND-counts it against each ``b[o]`` word by word; ``sparse`` keeps per output channel
  only the window words where ``b[o]`` is nonzero: zero words cost nothing, a word with one
  set bit (one-hot) is a shift and a mask (data movement, no count), the rest are AND-counted.
* A convolution over input codes keeps ``b`` as bits too and adds the codes under its set bits
  (find-first-set loop), so a sparse first layer costs in proportion to its ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnc.backends import core
from bnc.backends.c.lower import (
    CodesOut,
    ConcatView,
    PoolView,
    SumPoolView,
    _hex,
    _pack_channels,
    data_view,
    pool_view,
)
from bnc.backends.core import (
    BitAddView,
    ConcatStep,
    ConvStep,
    Geometry,
    Mode,
    ModelIO,
    PointView,
    PoolStep,
    Storage,
    SumPoolStep,
    Tensor,
    UnsupportedGraph,
    ViewKind,
    words,
)
from bnc.errors import BncError
from bnc.ir.graph import Graph
from bnc.ir.passes.narrow import NarrowThresholds

SCHEDULES = ("auto", "dense", "sparse")
# Instruction estimates, fitted to the bundled example's layers under qemu -icount on
# Cortex-M4 (docs/benchmarks.md): per output channel and position, plus per window word
# (dense) or per entry (sparse). An AND-count entry costs more than a dense word (its index
# and mask are two more loads), so the sparse form pays only where many words are zero or
# one-hot: with 32 channels per word that takes a very sparse b.
DENSE_CHANNEL, DENSE_WORD = 41.0, 14.4
SPARSE_CHANNEL, SPARSE_MULTI, SPARSE_HOT = 55.0, 20.6, 8.0


@dataclass(frozen=True)
class Coef:
    """A layer's per-channel plane ``t*T + s*S + c``: C types and values."""

    store: str  # C type of the stored t, s, c (int16_t, int32_t or int64_t)
    math: str  # C type the plane is computed in (int32_t or int64_t)
    t: tuple[int, ...]
    s: tuple[int, ...]
    c: tuple[int, ...]

    @property
    def bytes(self) -> int:
        size = {"int16_t": 2, "int32_t": 4, "int64_t": 8}[self.store]
        return size * (len(self.t) + len(self.s) + len(self.c))


@dataclass(frozen=True)
class BitConv(Geometry):
    """A convolution over bits (the ``dense`` or ``sparse`` schedule)."""

    index: int
    name: str
    plane_out: bool  # writes the int64 plane ``out`` (network output or a partial sum)
    codes: CodesOut | None  # writes int32 codes (a k-bit activation) instead of bits
    out: str  # C expression of that plane ("" when the layer writes bits)
    add: str  # C expression of an int64 plane added first, or ""
    bit_adds: tuple[BitAddView, ...]  # identity shortcuts of bits: +-s[o] by their bit
    points: tuple[PointView, ...]  # 1x1 branches over bits computed in place
    schedule: str
    nw: int
    onw: int
    compact: bool  # the window's taps are C bits each, back to back (else a word-aligned NW)
    weights: tuple[str, ...]  # dense: [o][window words]
    start: tuple[int, ...]  # sparse: AND-count entries of channel o: start[o] .. start[o+1]
    idx: tuple[int, ...]  # sparse: window word of each AND-count entry
    mask: tuple[str, ...]  # sparse: its weight word
    hot_start: tuple[int, ...]  # sparse: one-hot entries of channel o
    hot: tuple[int, ...]  # sparse: window word << 5 | bit
    entry_type: str  # C type of idx and hot
    nnz: tuple[int, ...]  # ones of b[o]
    nnz_tap: tuple[int, ...]  # ones of b per (o, ky, kx); only with padding
    tap_type: str
    coef: Coef
    src: int  # arena byte offsets
    dst: int
    win: int

    kind = ViewKind.CONV

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @property
    def window_words(self) -> int:
        return words(self.kh * self.kw * self.c) if self.compact else self.kh * self.kw * self.nw

    @property
    def weight_bytes(self) -> int:
        """Flash for this layer's constants: weights, entries, counts of ones, thresholds."""
        entry = 2 if self.entry_type == "uint16_t" else 4
        tap = 1 if self.tap_type == "uint8_t" else 2
        n = 4 * len(self.weights) + entry * (len(self.idx) + len(self.hot)) + 4 * len(self.mask)
        if self.idx:  # the AND-count tables (with their two end entries) exist only then
            n += (entry + 4) * 2 + 2 * len(self.start)
        n += 2 * len(self.hot_start) if self.schedule == "sparse" else 0
        return n + 2 * len(self.nnz) + tap * len(self.nnz_tap) + self.coef.bytes


@dataclass(frozen=True)
class CodeConv(Geometry):
    """A convolution over codes (the input quantizer's, or a global average pool's sums)."""

    index: int
    name: str
    plane_out: bool
    codes: CodesOut | None
    out: str
    add: str
    bit_adds: tuple[BitAddView, ...]
    points: tuple[PointView, ...]
    onw: int
    kwords: int  # words of one output channel's bits, C*KH*KW taps
    weights: tuple[str, ...]  # [o][kwords], tap (c, ky, kx) is bit k = (c*KH + ky)*KW + kx
    coef: Coef
    src: int
    dst: int
    win: int

    schedule = "codes"  # sums the codes under the set bits of b
    kind = ViewKind.CODES

    @property
    def weight_bytes(self) -> int:
        return 4 * len(self.weights) + self.coef.bytes


@dataclass(frozen=True)
class Pool(Geometry):
    index: int
    name: str
    nw: int
    and_words: tuple[str, ...]
    src: int
    dst: int

    schedule = "-"
    kind = ViewKind.POOL
    input = "bits"

    @property
    def weight_bytes(self) -> int:
        return 4 * len(self.and_words)


Layer = BitConv | CodeConv | Pool | PoolView | ConcatView | SumPoolView


@dataclass(frozen=True)
class Arena:
    size: int  # bytes
    per_tensor: int  # bytes with one buffer per tensor and per scratch
    peak_layer: str  # the layer whose input + scratch + output set the size
    plane_bytes: int = 0  # the int64 partial planes of two-branch residual layers (own arena)

    @property
    def words(self) -> int:
        return self.size // 4

    @property
    def sram(self) -> int:
        """All static RAM the activations take: the arena and the plane arena."""
        return self.size + self.plane_bytes


@dataclass(frozen=True)
class McuView(ModelIO):
    input_dst: int
    layers: tuple[Layer, ...]
    arena: Arena

    @property
    def plane_words(self) -> int:
        """int64s of the partial-plane arena (0: none)."""
        return self.arena.plane_bytes // 8

    @property
    def weight_bytes(self) -> int:
        return sum(v.weight_bytes for v in self.layers)

    @property
    def needs_round_shift(self) -> bool:
        return any(
            isinstance(v, BitConv | CodeConv) and v.codes is not None and v.codes.mode == "requant"
            for v in self.layers
        )

    @property
    def needs_count(self) -> bool:
        return any(
            isinstance(v, BitConv) or (isinstance(v, CodeConv) and v.points) for v in self.layers
        )

    @property
    def needs_count_and(self) -> bool:
        """A dense layer or an in-place 1x1 branch AND-counts whole words."""
        return any(
            (isinstance(v, BitConv) and v.schedule == "dense")
            or (isinstance(v, BitConv | CodeConv) and v.points)
            for v in self.layers
        )


def _ctype(values: list[int]) -> str:
    """The narrowest of int16_t, int32_t, int64_t that holds every value."""
    lo, hi = min(values, default=0), max(values, default=0)
    for t, b in (("int16_t", 15), ("int32_t", 31)):
        if -(1 << b) <= lo and hi < 1 << b:
            return t
    return "int64_t"


def coefficients(step: ConvStep) -> Coef:
    """The layer's plane coefficients (narrowed by ``NarrowThresholds`` where the threshold
    reads one layer) and the C types to store and compute them in."""
    o, c, kh, kw = step.weight.shape
    if step.mode is Mode.PLANE:
        return Coef("int64_t", "int64_t", step.t, step.s, (0,) * o)
    n = c * kh * kw
    lo, hi = step.value_range
    mag = max(-lo, hi)
    bound = max(abs(a) * n * mag + abs(b) * n * mag + abs(d)
                for a, b, d in zip(step.t, step.s, step.c, strict=True))  # fmt: skip
    math = "int32_t" if bound < 1 << 31 and not step.adds else "int64_t"
    store = _ctype([*step.t, *step.s, *step.c])
    return Coef(store, math, step.t, step.s, step.c)


def compact(weight: np.ndarray, padding: tuple[int, int]) -> bool:
    """Pack the window's taps back to back (C bits each) rather than one word-aligned group per
    tap: smaller whenever C is not a multiple of 32 (a fully connected layer over a flattened
    image has C = 1 and would otherwise spend a word per bit). Only without padding, where
    every window is whole."""
    return weight.shape[1] % 32 != 0 and tuple(padding) == (0, 0)


def _packed(weight: np.ndarray, packed_taps: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each output channel's window words (compact or ``[ky][kx][nw]``) and their ones."""
    o, c, kh, kw = weight.shape
    taps = weight.transpose(0, 2, 3, 1)  # (o, ky, kx, c)
    bits_ = taps.reshape(o, -1) if packed_taps else taps
    packed = np.array(_pack_channels(bits_), dtype=np.uint64).reshape(o, -1)
    ones = np.array([[bin(int(v)).count("1") for v in row] for row in packed]).reshape(o, -1)
    return packed, ones


def dense_cost(weight: np.ndarray, out_hw: tuple[int, int], packed_taps: bool) -> float:
    """Instruction estimate of the dense schedule's channel loop over one layer."""
    o, c, kh, kw = weight.shape
    k = words(kh * kw * c) if packed_taps else kh * kw * words(c)
    return out_hw[0] * out_hw[1] * o * (DENSE_CHANNEL + DENSE_WORD * k)


def sparse_cost(weight: np.ndarray, out_hw: tuple[int, int], packed_taps: bool) -> float:
    _, ones = _packed(weight, packed_taps)
    per = SPARSE_MULTI * np.count_nonzero(ones > 1) + SPARSE_HOT * np.count_nonzero(ones == 1)
    return (float(per) + SPARSE_CHANNEL * weight.shape[0]) * out_hw[0] * out_hw[1]


def choose(step: ConvStep, schedule: str) -> str:
    if schedule != "auto":
        return schedule
    g, w = step.geo, step.weight
    pt = compact(w, (g.ph, g.pw))
    cheaper = sparse_cost(w, (g.oh, g.ow), pt) < dense_cost(w, (g.oh, g.ow), pt)
    return "sparse" if cheaper else "dense"


def _scratch(step: ConvStep, sched: str) -> int:
    """Bytes of the layer's window (and, dense with padding, its per-tap ones)."""
    g = step.geo
    if not step.bits_in:
        return 4 * g.c * g.kh * g.kw
    taps = g.o * g.kh * g.kw if sched == "dense" and (g.ph, g.pw) != (0, 0) else 0
    k = words(g.taps * g.c) if compact(step.weight, (g.ph, g.pw)) else g.taps * words(g.c)
    return 4 * (k + taps)


def _points(step: ConvStep, expr) -> tuple[PointView, ...]:
    out = []
    for p in step.points:
        w = p.weight[:, :, 0, 0]
        packed = _pack_channels(w)
        _, _, width = p.src.shape
        nnz = tuple(int(v) for v in w.sum(axis=1))
        out.append(PointView(expr(p.src), p.src.c, width, p.src.nw, *p.stride,
                             tuple(_hex(v) for v in packed), nnz, p.t, p.s))  # fmt: skip
    return tuple(out)


def _bitconv(step: ConvStep, schedule: str, src, dst, win, out, add, bit_adds, points) -> BitConv:
    g = step.geo
    o, c, kh, kw = step.weight.shape
    packed_taps = compact(step.weight, (g.ph, g.pw))
    packed, ones = _packed(step.weight, packed_taps)
    k = packed.shape[1]
    weights: tuple[str, ...] = ()
    start, idx, mask, hot_start, hot = [0], [], [], [0], []
    if schedule == "dense":
        weights = tuple(_hex(v) for v in packed.reshape(-1))
    else:
        for r in range(o):
            for j in np.nonzero(ones[r] > 1)[0]:
                idx.append(int(j))
                mask.append(_hex(packed[r, j]))
            for j in np.nonzero(ones[r] == 1)[0]:
                hot.append(int(j) << 5 | (int(packed[r, j]).bit_length() - 1))
            start.append(len(idx))
            hot_start.append(len(hot))
    # Border positions subtract the ones of b on their padded taps: the sparse form keeps
    # them per (o, ky, kx) in flash, the dense form counts them from its weight words into
    # the arena when the layer starts.
    padded = (g.ph, g.pw) != (0, 0) and schedule == "sparse"
    nnz_tap = tuple(int(v) for v in step.weight.sum(axis=1).reshape(-1)) if padded else ()
    if k << 5 >= 1 << 32:
        raise UnsupportedGraph(f"layer '{step.name}': a window of {k} words is too large")
    return BitConv(
        **step.view_fields(),
        codes=CodesOut.of(step, "int32_t"),
        out=out,
        add=add,
        bit_adds=bit_adds,
        points=points,
        schedule=schedule,
        nw=words(c),
        onw=words(o),
        compact=packed_taps,
        weights=weights,
        start=tuple(start),
        idx=tuple(idx),
        mask=tuple(mask),
        hot_start=tuple(hot_start),
        hot=tuple(hot),
        entry_type="uint16_t" if k << 5 < 1 << 16 else "uint32_t",
        nnz=tuple(int(v) for v in step.weight.reshape(o, -1).sum(axis=1)),
        nnz_tap=nnz_tap,
        tap_type="uint8_t" if c < 256 else "uint16_t",
        coef=coefficients(step),
        src=src,
        dst=dst,
        win=win,
    )


def _codeconv(step: ConvStep, src, dst, win, out, add, bit_adds, points) -> CodeConv:
    g = step.geo
    o = g.o
    packed = _pack_channels(step.weight.reshape(o, -1))
    return CodeConv(
        **step.view_fields(),
        codes=CodesOut.of(step, "int32_t"),
        out=out,
        add=add,
        bit_adds=bit_adds,
        points=points,
        onw=words(o),
        kwords=words(g.c * g.kh * g.kw),
        weights=tuple(_hex(v) for v in packed),
        coef=coefficients(step),
        src=src,
        dst=dst,
        win=win,
    )


def _pool_of(t: Tensor) -> str | None:
    if t.output:
        return None
    return "planes" if t.storage is Storage.PLANE else "arena"


def _bytes(t: Tensor) -> int:
    return t.units() * (8 if t.storage is Storage.PLANE else 4)


def lower(graph: Graph, name: str, schedule: str = "auto") -> McuView:
    if schedule not in SCHEDULES:
        raise BncError(f"unknown schedule '{schedule}'; choose one of: {', '.join(SCHEDULES)}")
    sched = core.schedule(NarrowThresholds().apply(graph), fuse_points=True)
    inp = sched.input
    choices = {
        s.index: (choose(s, schedule) if s.bits_in else "codes")
        for s in sched.steps
        if isinstance(s, ConvStep)
    }
    scratch = {
        s.index: ("arena", _scratch(s, choices[s.index]))
        for s in sched.steps
        if isinstance(s, ConvStep)
    }
    plan = core.plan_memory(sched, _pool_of, _bytes, scratch)

    def at(t: Tensor) -> int:
        return plan.offset(t) if not t.output else -1

    def expr(t: Tensor) -> str:
        if t.output:
            return "acc"
        if t.storage is Storage.PLANE:
            return f"(bnc_planes + {plan.offset(t) // 8})"
        ctype = "uint32_t" if t.storage is Storage.BITS else "int32_t"
        return f"BNC_AT({ctype}, {plan.offset(t)})"

    layers: list[Layer] = []
    for step in sched.steps:
        if isinstance(step, ConvStep):
            win = plan.offset((step.index, "scratch"))
            plane = step.mode is Mode.PLANE
            out = expr(step.dst) if plane else ""
            add = expr(step.acc_in) if step.acc_in is not None else ""
            bits_ = tuple(BitAddView(expr(b.src), b.src.nw, b.s) for b in step.bit_adds)
            dst = at(step.dst) if not plane else -1
            pts = _points(step, expr)
            if choices[step.index] == "codes":
                layers.append(_codeconv(step, at(step.src), dst, win, out, add, bits_, pts))
            else:
                how = choices[step.index]
                layers.append(_bitconv(step, how, at(step.src), dst, win, out, add, bits_, pts))
        elif isinstance(step, PoolStep) and step.src.storage is not Storage.BITS:
            layers.append(pool_view(step, expr, lambda _t: "int32_t"))
        elif isinstance(step, PoolStep):
            mask = tuple(_hex(v) for v in _pack_channels(step.and_mask[None]))
            layers.append(
                Pool(**step.geo.fields(), index=step.index, name=step.name,
                     nw=words(step.geo.c), and_words=mask, src=at(step.src), dst=at(step.dst))
            )  # fmt: skip
        elif isinstance(step, ConcatStep | SumPoolStep):
            layers.append(data_view(step, expr, lambda _t: "int32_t"))
    peak = plan.peak_step.get("arena", -1)
    arena = Arena(
        max(8, plan.sizes.get("arena", 0)),
        plan.per_tensor.get("arena", 0),
        sched.steps[peak].name if peak >= 0 else "input",
        plan.sizes.get("planes", 0),
    )
    return McuView(
        **ModelIO.of(graph, sched, name).fields(),
        input_dst=at(inp.dst),
        layers=tuple(layers),
        arena=arena,
    )
