"""Lowered IR → the microcontroller view model: kernels without heap, OS or popcount instruction.

What differs from the portable C target (``bnc.backends.c.lower``):

* **One static arena.** Every activation tensor and every layer's scratch lives in one
  ``uint32_t`` array, placed by a liveness plan (``plan_arena``): in a chain, tensor ``i`` is
  live while layer ``i`` writes it and layer ``i+1`` reads it, so tensors alternate between the
  arena's two ends and a layer's scratch sits between its input and its output. The arena is
  ``max_i(in_i + scratch_i + out_i)``; one buffer per tensor would be the sum of them all.
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

from bnc.backends.c.lower import UnsupportedGraph, _hex, _pack_channels, words
from bnc.errors import BncError
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.narrow import narrow
from bnc.ir.types import Kind

SCHEDULES = ("auto", "dense", "sparse")
ALIGN = 8  # bytes: every arena region starts on a double word
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
class BitConv:
    """A convolution over bits (the ``dense`` or ``sparse`` schedule)."""

    index: int
    name: str
    final: bool
    schedule: str
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
class CodeConv:
    """A convolution over the input quantizer's codes."""

    index: int
    name: str
    final: bool
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
    onw: int
    kwords: int  # words of one output channel's bits, C*KH*KW taps
    weights: tuple[str, ...]  # [o][kwords], tap (c, ky, kx) is bit k = (c*KH + ky)*KW + kx
    coef: Coef
    src: int
    dst: int
    win: int

    schedule = "codes"  # sums the codes under the set bits of b

    @property
    def weight_bytes(self) -> int:
        return 4 * len(self.weights) + self.coef.bytes


@dataclass(frozen=True)
class Pool:
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
    src: int
    dst: int

    schedule = "-"

    @property
    def weight_bytes(self) -> int:
        return 4 * len(self.and_words)


Layer = BitConv | CodeConv | Pool


@dataclass(frozen=True)
class Arena:
    size: int  # bytes
    per_tensor: int  # bytes with one buffer per tensor and per scratch
    peak_layer: str  # the layer whose input + scratch + output set the size


@dataclass(frozen=True)
class McuView:
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
    input_dst: int
    layers: tuple[Layer, ...]
    arena: Arena
    out_channels: int
    out_per_channel: int
    out_scale: tuple[str, ...]
    out_bias: tuple[str, ...]

    @property
    def weight_bytes(self) -> int:
        return sum(v.weight_bytes for v in self.layers)

    @property
    def needs_count(self) -> bool:
        return any(isinstance(v, BitConv) for v in self.layers)


def _ctype(values: list[int]) -> str:
    """The narrowest of int16_t, int32_t, int64_t that holds every value."""
    lo, hi = min(values, default=0), max(values, default=0)
    for t, b in (("int16_t", 15), ("int32_t", 31)):
        if -(1 << b) <= lo and hi < 1 << b:
            return t
    return "int64_t"


def coefficients(op: O.SumConv2d, plane: O.Threshold | O.OutputAffine, lo: int, hi: int) -> Coef:
    """Narrowed thresholds (exact over the (T, S) box), or the output plane as it is."""
    o, c, kh, kw = op.weight.shape
    n = c * kh * kw
    mag = max(-lo, hi)
    if isinstance(plane, O.OutputAffine):
        t, s = [int(v) for v in plane.t], [int(v) for v in plane.s]
        return Coef("int64_t", "int64_t", tuple(t), tuple(s), (0,) * o)
    nnz = op.weight.reshape(o, -1).sum(axis=1)
    trip = [
        narrow(int(plane.t[k]), int(plane.s[k]), int(plane.c[k]), n, int(nnz[k]), lo, hi)
        for k in range(o)
    ]
    t, s, cc = ([v[i] for v in trip] for i in range(3))
    bound = max(abs(a) * n * mag + abs(b) * n * mag + abs(d) for a, b, d in trip)
    math = "int32_t" if bound < 1 << 31 else "int64_t"
    store = _ctype(t + s + cc)
    return Coef(store, math, tuple(t), tuple(s), tuple(cc))


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


def choose(op: O.SumConv2d, out_hw: tuple[int, int], schedule: str) -> str:
    if schedule != "auto":
        return schedule
    pt = compact(op.weight, op.padding)
    cheaper = sparse_cost(op.weight, out_hw, pt) < dense_cost(op.weight, out_hw, pt)
    return "sparse" if cheaper else "dense"


def _bitconv(i, op, plane, t_in, out_hw, schedule, src, dst, win) -> BitConv:
    o, c, kh, kw = op.weight.shape
    _, h, w = t_in.shape
    final = isinstance(plane, O.OutputAffine)
    packed_taps = compact(op.weight, op.padding)
    packed, ones = _packed(op.weight, packed_taps)
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
    padded = op.padding != (0, 0) and schedule == "sparse"
    nnz_tap = tuple(int(v) for v in op.weight.sum(axis=1).reshape(-1)) if padded else ()
    if k << 5 >= 1 << 32:
        raise UnsupportedGraph(f"layer '{plane.name}': a window of {k} words is too large")
    return BitConv(
        index=i,
        name=plane.name,
        final=final,
        schedule=schedule,
        c=c,
        h=h,
        w=w,
        o=o,
        oh=out_hw[0],
        ow=out_hw[1],
        kh=kh,
        kw=kw,
        sh=op.stride[0],
        sw=op.stride[1],
        ph=op.padding[0],
        pw=op.padding[1],
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
        nnz=tuple(int(v) for v in op.weight.reshape(o, -1).sum(axis=1)),
        nnz_tap=nnz_tap,
        tap_type="uint8_t" if c < 256 else "uint16_t",
        coef=coefficients(op, plane, -1, 1),
        src=src,
        dst=dst,
        win=win,
    )


def _codeconv(i, op, plane, t_in, out_hw, src, dst, win) -> CodeConv:
    o, c, kh, kw = op.weight.shape
    _, h, w = t_in.shape
    packed = _pack_channels(op.weight.reshape(o, -1))
    return CodeConv(
        index=i,
        name=plane.name,
        final=isinstance(plane, O.OutputAffine),
        c=c,
        h=h,
        w=w,
        o=o,
        oh=out_hw[0],
        ow=out_hw[1],
        kh=kh,
        kw=kw,
        sh=op.stride[0],
        sw=op.stride[1],
        ph=op.padding[0],
        pw=op.padding[1],
        onw=words(o),
        kwords=words(c * kh * kw),
        weights=tuple(_hex(v) for v in packed),
        coef=coefficients(op, plane, min(t_in.lo, 0), max(t_in.hi, 0)),
        src=src,
        dst=dst,
        win=win,
    )


def _round(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_arena(
    tensors: list[int], scratch: list[int], names: list[str]
) -> tuple[Arena, list[int], list[int]]:
    """Offsets for a chain: layer ``i`` reads tensor ``i``, writes tensor ``i + 1`` and uses
    ``scratch[i]``. Even tensors sit at the arena's start, odd ones at its end, scratch after
    the even one; the size is the largest ``in + scratch + out`` (no placement does better)."""
    sizes = [_round(v) for v in tensors]
    scr = [_round(v) for v in scratch]
    need = [sizes[i] + scr[i] + sizes[i + 1] for i in range(len(scr))] or [sizes[0]]
    size = max(need)
    offs = [0 if k % 2 == 0 else size - sizes[k] for k in range(len(sizes))]
    scratch_offs = [sizes[i if i % 2 == 0 else i + 1] for i in range(len(scr))]
    peak = names[need.index(size)] if scr else "input"
    return Arena(size, sum(sizes) + sum(scr), peak), offs, scratch_offs


def lower(graph: Graph, name: str, schedule: str = "auto") -> McuView:
    if schedule not in SCHEDULES:
        raise BncError(f"unknown schedule '{schedule}'; choose one of: {', '.join(SCHEDULES)}")
    ops, ins = graph.ops, graph.input_types()
    first = ops[0]
    c0, h0, w0 = graph.input.shape
    if isinstance(first, O.QuantizeInput):
        kind, scale = "quantize", float(np.float32(first.scale)).hex()
        qmin, qmax = first.qmin, first.qmax
        tensors = [4 * c0 * h0 * w0]  # codes as int32_t
    else:
        kind, scale, qmin, qmax = "sign", "0x1p+0", 0, 0
        tensors = [4 * words(c0) * h0 * w0]
    # First pass: the layers' shapes, schedules, tensor and scratch sizes.
    steps: list[tuple] = []
    scratch: list[int] = []
    out_op: O.OutputAffine | None = None
    i = 1
    while i < len(ops):
        op, t_in = ops[i], ins[i]
        if isinstance(op, O.SumConv2d):
            plane = ops[i + 1]
            assert isinstance(plane, O.Threshold | O.OutputAffine)
            o, c, kh, kw = op.weight.shape
            _, oh, ow = plane.infer(op.infer(t_in)).shape
            if isinstance(plane, O.OutputAffine):
                if out_op is not None or i + 2 != len(ops):
                    raise UnsupportedGraph(f"layer '{plane.name}': the output must come last")
                out_op = plane
            bits = t_in.kind is Kind.BIT
            sched = choose(op, (oh, ow), schedule) if bits else "codes"
            steps.append((i, op, plane, t_in, (oh, ow), sched))
            # the window; a padded dense layer also counts b's ones per tap on entry
            taps = o * kh * kw if sched == "dense" and op.padding != (0, 0) else 0
            k = words(kh * kw * c) if compact(op.weight, op.padding) else kh * kw * words(c)
            scratch.append(4 * (k + taps if bits else c * kh * kw))
            tensors.append(0 if out_op is plane else 4 * words(o) * oh * ow)
            i += 2
        elif isinstance(op, O.BitMaxPool2d):
            c, _, _ = t_in.shape
            _, oh, ow = op.infer(t_in).shape
            steps.append((i, op, None, t_in, (oh, ow), "pool"))
            scratch.append(0)
            tensors.append(4 * words(c) * oh * ow)
            i += 1
        elif isinstance(op, O.Flatten):
            if t_in.kind is not Kind.ACC and t_in.shape[1:] != (1, 1):
                raise UnsupportedGraph(
                    f"layer '{op.name}': a Flatten of {t_in} must feed a BinaryLinear"
                )
            i += 1
        else:
            raise UnsupportedGraph(
                f"layer '{op.name}' ({op.opname}) has no microcontroller lowering"
            )
    if out_op is None:
        raise UnsupportedGraph("the graph has no output layer")
    names = [(s[2] or s[1]).name for s in steps]
    arena, offs, scratch_offs = plan_arena(tensors, scratch, names)
    layers: list[Layer] = []
    for k, (i, op, plane, t_in, out_hw, sched) in enumerate(steps):
        src, dst, win = offs[k], offs[k + 1], scratch_offs[k]
        if sched == "pool":
            c, h, w = t_in.shape
            mask = tuple(_hex(v) for v in _pack_channels(op.and_mask[None]))
            layers.append(
                Pool(
                    i,
                    op.name,
                    c,
                    h,
                    w,
                    *out_hw,
                    *op.kernel,
                    *op.stride,
                    *op.padding,
                    words(c),
                    mask,
                    src,
                    dst,
                )  # fmt: skip
            )
        elif sched == "codes":
            layers.append(_codeconv(i, op, plane, t_in, out_hw, src, dst, win))
        else:
            layers.append(_bitconv(i, op, plane, t_in, out_hw, sched, src, dst, win))
    o = out_op.scale.shape[0]
    return McuView(
        name=name,
        input_size=c0 * h0 * w0,
        output_size=graph.output.size,
        input_kind=kind,
        input_c=c0,
        input_h=h0,
        input_w=w0,
        input_nw=words(c0),
        scale_hex=scale,
        qmin=qmin,
        qmax=qmax,
        input_dst=offs[0],
        layers=tuple(layers),
        arena=arena,
        out_channels=o,
        out_per_channel=graph.output.size // o,
        out_scale=tuple(float(v).hex() for v in out_op.scale),
        out_bias=tuple(float(v).hex() for v in out_op.bias),
    )
