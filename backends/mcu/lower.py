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
* **Three schedules for a binary convolution** (``--schedule``, ``choose``): ``dense`` gathers
  the window once per output position (``T`` is counted there, shared by all output channels),
  then AND-counts it against each ``b[o]`` word by word; ``sparse`` keeps per output channel
  only the window words where ``b[o]`` is nonzero: zero words cost nothing, a word with one
  set bit (one-hot) is a shift and a mask (data movement, no count), the rest are AND-counted.
* **The sliced schedule** (stride 1, bits in): the input re-laid as one flat zero-padded bit
  string per channel, so that one word holds 32 output positions' bits of one tap; each one
  of ``b[o]`` (or each zero, where zeros are fewer: the count is then the window's ones less
  theirs) adds that word, read at its bit offset, into a bit-sliced counter of the 32
  positions (carry-save adds), and the counters turn into byte counts by bit transposes. Its
  cost is in proportion to the fewer of ones and zeros over 32 positions at once, so it wins
  over both forms above on every 3x3 layer of the bundled model (3-5x fewer instructions);
  fully connected layers (one position) keep the forms above.
* A convolution over input codes keeps ``b`` as bits too and adds the codes under its set bits
  (find-first-set loop), so a sparse first layer costs in proportion to its ones.
* **Multi-bit forms.** The masks of a multi-level layer are one step (``merge_masks``): the
  window is gathered and ``T`` counted once, then per output channel each mask's ``S`` is
  counted over the same window, ``plane = t*T + sum_m s[m]*S_m + c``. Codes are held at their
  bit width: as ``k`` bit planes, counted like bits (``S_m = sum_j 2^j * ones(window_j & b_m) +
  lo * ones(b_m)``, ``k * M`` counts of every window word), or as integers in their narrowest C
  type (``int8_t`` for an 8-bit stream; summed under the masks' ones, a cost in proportion to
  the ones). Which codes are planes is decided per model (``code_planes``): the widest ``k <=
  CODE_PLANES`` whose layers the estimates find cheapest, so two dense 2-bit weight masks count
  planes and fifteen sparse one-hot masks of 4-bit weights sum integer codes.
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

SCHEDULES = ("auto", "dense", "sparse", "sliced")
# Instruction estimates, fitted to the bundled example's layers under qemu -icount on
# Cortex-M4 (docs/benchmarks.md): per output channel and position, plus per window word
# (dense) or per entry (sparse). An AND-count entry costs more than a dense word (its index
# and mask are two more loads), so the sparse form pays only where many words are zero or
# one-hot: with 32 channels per word that takes a very sparse b.
DENSE_CHANNEL, DENSE_WORD = 41.0, 14.4
SPARSE_CHANNEL, SPARSE_MULTI, SPARSE_HOT = 55.0, 20.6, 8.0
# A layer over integer codes, fitted like the above (W2A2 / W3A3 / W4A4 chains on Cortex-M4):
# per output position and tap (the window's gather), per output channel, per mask and word of
# the kernel (the find-first-set loop's words), per one of the masks (one code added).
CODES_TAP, CODES_CHANNEL, CODES_WORD, CODES_ONE = 3.2, 58.0, 8.4, 7.6
# The sliced schedule (stride 1, bits in), fitted by least squares to 24 layers (the bundled
# and residual examples, the test edge shapes at 50 % and 95 % alpha; within 25 %): per entry
# and chunk of 32 flat positions (a funnel shift and a carry-save add), per (channel, mask)
# and chunk (the counter's words to bytes), per output channel and position (the plane), per
# further mask there, per window word and position (T's window), per input pixel and channel
# (the flat planes built).
SLICED_ENTRY, SLICED_OM, SLICED_CHANNEL, SLICED_MASK = 21.1, 76.7, 34.5, 8.0
SLICED_WINDOW, SLICED_BIT = 59.2, 5.2
# ``auto`` takes the sliced schedule only where its entries (three bytes or so each) take at
# most this many times the flash of the weights as bits: below about 8 % of ones (or zeros).
SLICED_FLASH = 2.0
# Codes of up to this many bits may be held as bit planes (``code_planes``).
CODE_PLANES = 4
_SIZE = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4, "uint32_t": 4}


@dataclass(frozen=True)
class Coef:
    """A layer's per-channel plane ``t*T + sum_m s[m]*S_m + c``: C types and values."""

    store: str  # C type of the stored t, s, c (int16_t, int32_t or int64_t)
    math: str  # C type the plane is computed in (int32_t or int64_t)
    t: tuple[int, ...]
    s: tuple[int, ...]  # [o][m]
    c: tuple[int, ...]

    @property
    def bytes(self) -> int:
        size = {"int16_t": 2, "int32_t": 4, "int64_t": 8}[self.store]
        return size * (len(self.t) + len(self.s) + len(self.c))


@dataclass(frozen=True)
class Sliced:
    """The ``sliced`` schedule of a stride-1 convolution over bits. The input is re-laid as one
    flat bit string per channel, the zero-padded image row after row (``wp`` bits a row), so
    that tap ``(ky, kx)`` of the output at flat position ``q = oy*wp + ox`` is bit
    ``q + ky*wp + kx``. For 32 flat positions at once (a *chunk*, one word), each entry of
    ``(o, m)`` (a one of ``b_m[o]``, or a zero where ``flip``: then the count is the window's
    ones less it) is one word read at a bit offset (a funnel shift) and added into a bit-sliced
    counter of ``lb`` words (carry-save adds): a zero kernel costs nothing, and the cost is in
    proportion to the fewer of ones and zeros."""

    wp: int  # bits of a padded row
    psw: int  # words of one channel's flat bit string (every read in bounds)
    chunks: int  # chunks of 32 flat positions (the last holds (oh - 1) * wp + ow - 1)
    lb: int  # bits of a counter: every count fits
    start: tuple[int, ...]  # entries of (o, m): start[om] .. start[om + 1]
    word: tuple[int, ...]  # entry: c * psw + d // 32, d = ky * wp + kx
    shift: tuple[int, ...]  # entry: d % 32
    flip: tuple[int, ...]  # per (o, m): 1 where the entries are the zeros of b_m[o]
    word_type: str
    start_type: str
    c: int  # input channels: flat planes
    planes: int  # arena byte offsets of the flat planes and of the counters
    counters: int

    @property
    def bytes(self) -> int:
        start = _SIZE[self.start_type] * len(self.start)
        return (_SIZE[self.word_type] + 1) * len(self.word) + start + len(self.flip)

    @property
    def groups(self) -> int:
        """Bytes of a count (eight counter bits each)."""
        return -(-self.lb // 8)


def sliceable(step: ConvStep) -> bool:
    """The sliced schedule takes stride-1 layers over bits (one input plane)."""
    return step.packed_in and step.src.planes == 1 and (step.geo.sh, step.geo.sw) == (1, 1)


def _slice_shape(step: ConvStep) -> tuple[int, int, int]:
    """(wp, psw, chunks) of a sliceable layer."""
    g = step.geo
    wp, hp = g.w + 2 * g.pw, g.h + 2 * g.ph
    chunks = ((g.oh - 1) * wp + g.ow - 1) // 32 + 1
    dmax = (g.kh - 1) * wp + g.kw - 1
    psw = max(-(-hp * wp // 32), chunks - 1 + dmax // 32 + 2)
    return wp, psw, chunks


def _slice_entries(step: ConvStep) -> tuple[list[np.ndarray], list[int]]:
    """Per (o, m): the taps (c, ky, kx) counted (the ones of b_m[o], or its zeros where fewer)
    and whether they are the zeros."""
    g = step.geo
    taps, flip = [], []
    for k in range(g.o):
        for mk in step.masks:
            b = mk.weight[k].astype(bool)
            f = int(b.sum()) * 2 > b.size
            taps.append(np.argwhere(~b if f else b))
            flip.append(int(f))
    return taps, flip


def sliced_cost(step: ConvStep) -> float:
    """Instruction estimate of the sliced schedule over one layer (``SLICED_*``)."""
    g = step.geo
    _, _, chunks = _slice_shape(step)
    taps, _ = _slice_entries(step)
    entries = sum(len(t) for t in taps)
    groups = _count_bytes(taps)
    window = _window_words(step)
    per_chunk = SLICED_ENTRY * entries + SLICED_OM * len(taps) * groups
    per_pixel = g.o * SLICED_CHANNEL + (len(taps) - g.o) * SLICED_MASK + SLICED_WINDOW * window
    return chunks * per_chunk + g.oh * g.ow * per_pixel + g.h * g.w * g.c * SLICED_BIT


@dataclass(frozen=True)
class BitConv(Geometry):
    """A convolution over bits or the bit planes of codes (the ``dense`` or ``sparse``
    schedule), of one or several masks. Per output channel ``o`` and mask ``m`` (index
    ``om = o*M + m``): ``S_m = sum_j wj[j] * ones(window_j & b_m[o]) + off * ones(b_m[o])``."""

    index: int
    name: str
    plane_out: bool  # writes the int64 plane ``out`` (network output or a partial sum)
    codes: CodesOut | None  # writes codes (a k-bit activation) instead of bits
    out: str  # C expression of that plane ("" when the layer writes bits)
    add: str  # C expression of an int64 plane added first, or ""
    bit_adds: tuple[BitAddView, ...]  # identity shortcuts of bits: +-s[o] by their bit
    points: tuple[PointView, ...]  # 1x1 branches over bits computed in place
    schedule: str
    nw: int
    onw: int
    masks: int  # M binary masks (multi-level weights), T shared
    planes_in: int  # P input bit planes (1 for bits), each [H][W][NW]
    wj: tuple[int, ...]  # what a one bit of input plane j adds (2 for bits, 2^j for codes)
    off: int  # a tap's value with all its bits zero (-1 for bits, lo for codes)
    compact: bool  # the window's taps are C bits each, back to back (else a word-aligned NW)
    weights: tuple[str, ...]  # dense: [o][m][window words]
    start: tuple[int, ...]  # sparse: AND-count entries of (o, m): start[om] .. start[om+1]
    idx: tuple[int, ...]  # sparse: window word of each AND-count entry
    mask: tuple[str, ...]  # sparse: its weight word
    hot_start: tuple[int, ...]  # sparse: one-hot entries of (o, m)
    hot: tuple[int, ...]  # sparse: window word << 5 | bit
    entry_type: str  # C type of idx and hot
    nnz: tuple[int, ...]  # ones of b_m[o], [o][m]
    nnz_type: str  # their C type (uint8_t, uint16_t or uint32_t)
    nnz_tap: tuple[int, ...]  # ones of b_m[o] per (ky, kx), [o][m][ky][kx]; only with padding
    tap_type: str
    coef: Coef
    src: int  # arena byte offsets
    dst: int
    win: int
    sliced: Sliced | None = None  # the sliced schedule's planes and entries

    kind = ViewKind.CONV

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @property
    def window_words(self) -> int:
        """Words of one input plane's window."""
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
        n += self.sliced.bytes if self.sliced else 0
        nnz = _SIZE.get(self.nnz_type, 4) * len(self.nnz)
        return n + nnz + tap * len(self.nnz_tap) + self.coef.bytes + _code_bytes(self)


@dataclass(frozen=True)
class CodeConv(Geometry):
    """A convolution over integer codes (the input quantizer's, wide activations, a global
    average pool's sums), of one or several masks."""

    index: int
    name: str
    plane_out: bool
    codes: CodesOut | None
    out: str
    add: str
    bit_adds: tuple[BitAddView, ...]
    points: tuple[PointView, ...]
    onw: int
    masks: int  # M binary masks, T shared
    src_type: str  # C type of an input code (its narrowest); the window holds the same
    kwords: int  # words of one output channel's bits, C*KH*KW taps
    weights: tuple[str, ...]  # [o][m][kwords], tap (c, ky, kx) is bit k = (c*KH + ky)*KW + kx
    coef: Coef
    src: int
    dst: int
    win: int

    schedule = "codes"  # sums the codes under the set bits of b
    kind = ViewKind.CODES

    @property
    def weight_bytes(self) -> int:
        return 4 * len(self.weights) + self.coef.bytes + _code_bytes(self)


def _code_bytes(v: BitConv | CodeConv) -> int:
    """Flash of a k-bit activation's constants (``graph_ops.code_tables``: int64 thresholds, or
    int64 constants and int8 shifts)."""
    if v.codes is None:
        return 0
    return 8 * len(v.codes.thr) + len(v.codes.shift)


@dataclass(frozen=True)
class Pool(Geometry):
    """A max-pool of bits: OR per channel, AND on the channels of ``and_words`` (none when
    every channel ORs)."""

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
    input_type: str  # C type of the input quantizer's codes (uint32_t words for Sign)
    code_planes: int  # codes of up to this many bits are held as bit planes (0: none)
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
    def needs_sliced(self) -> bool:
        return any(isinstance(v, BitConv) and v.sliced for v in self.layers)

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
    reads one layer, int64 values otherwise), stored in the narrowest type that holds them, and
    the C type to compute the plane in: int32 where no partial sum of ``t*T + sum_m s[m]*S_m +
    c`` can leave it (``|T| <= n * mag``, ``|S_m| <= ones(b_m) * mag`` for taps of magnitude at
    most ``mag``), else int64."""
    o, c, kh, kw = step.weight.shape
    masks = step.masks
    s = tuple(mk.s[k] for k in range(o) for mk in masks)
    store = _ctype([*step.t, *s, *step.c])
    if step.mode is Mode.PLANE:
        return Coef(store, "int64_t", step.t, s, (0,) * o)
    lo, hi = step.value_range
    mag = max(-lo, hi)
    n = c * kh * kw
    ones = [mk.weight.reshape(o, -1).sum(axis=1) for mk in masks]
    bound = max(
        abs(step.t[k]) * n * mag
        + sum(abs(mk.s[k]) * int(nz[k]) * mag for mk, nz in zip(masks, ones, strict=True))
        + abs(step.c[k])
        for k in range(o)
    )
    math = "int32_t" if bound < 1 << 31 and not step.adds else "int64_t"
    return Coef(store, math, step.t, s, step.c)


def compact(weight: np.ndarray, padding: tuple[int, int]) -> bool:
    """Pack the window's taps back to back (C bits each) rather than one word-aligned group per
    tap: smaller whenever C is not a multiple of 32 (a fully connected layer over a flattened
    image has C = 1 and would otherwise spend a word per bit). Only without padding, where
    every window is whole."""
    return weight.shape[-3] % 32 != 0 and tuple(padding) == (0, 0)


def _packed(weight: np.ndarray, packed_taps: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each output channel's window words (compact or ``[ky][kx][nw]``) and their ones."""
    o, c, kh, kw = weight.shape
    taps = weight.transpose(0, 2, 3, 1)  # (o, ky, kx, c)
    bits_ = taps.reshape(o, -1) if packed_taps else taps
    packed = np.array(_pack_channels(bits_), dtype=np.uint64).reshape(o, -1)
    ones = np.unpackbits(packed.astype("<u4").view(np.uint8), axis=1).reshape(o, -1, 32).sum(2)
    return packed, ones


def _masks_of(weight: np.ndarray) -> np.ndarray:
    """(O, C, kh, kw) or (M, O, C, kh, kw) → (M, O, C, kh, kw)."""
    return weight.reshape(-1, *weight.shape[-4:])


def dense_cost(
    weight: np.ndarray, out_hw: tuple[int, int], packed_taps: bool, planes: int = 1
) -> float:
    """Instruction estimate of the dense schedule's channel loop over one layer: ``weight`` is
    one mask (O, C, kh, kw) or several (M, O, C, kh, kw), over ``planes`` input bit planes."""
    m, o, c, kh, kw = _masks_of(weight).shape
    k = words(kh * kw * c) if packed_taps else kh * kw * words(c)
    return out_hw[0] * out_hw[1] * o * (DENSE_CHANNEL + DENSE_WORD * k * m * planes)


def sparse_cost(
    weight: np.ndarray, out_hw: tuple[int, int], packed_taps: bool, planes: int = 1
) -> float:
    per = 0
    for w in _masks_of(weight):
        _, ones = _packed(w, packed_taps)
        per += SPARSE_MULTI * np.count_nonzero(ones > 1) + SPARSE_HOT * np.count_nonzero(ones == 1)
    o = weight.shape[-4]
    return (float(per) * planes + SPARSE_CHANNEL * o) * out_hw[0] * out_hw[1]


def codes_cost(step: ConvStep) -> float:
    """Instruction estimate of a layer over integer codes (``CodeConv``)."""
    g, masks = step.geo, step.masks
    n = g.c * g.kh * g.kw
    ones = sum(int(mk.weight.sum()) for mk in masks) / g.o
    per = CODES_CHANNEL + CODES_WORD * words(n) * len(masks) + CODES_ONE * ones
    return g.oh * g.ow * (CODES_TAP * n + g.o * per)


def _bit_costs(step: ConvStep) -> dict[str, float]:
    g, w, p = step.geo, np.stack([mk.weight for mk in step.masks]), step.src.planes
    pt = compact(w, (g.ph, g.pw))
    costs = {
        "dense": dense_cost(w, (g.oh, g.ow), pt, p),
        "sparse": sparse_cost(w, (g.oh, g.ow), pt, p),
    }
    if sliceable(step):
        costs["sliced"] = sliced_cost(step)
    return costs


def choose(step: ConvStep, schedule: str) -> str:
    """The kernel of one layer: ``codes`` over integer codes, else the schedule asked for or
    (``auto``, and ``sliced`` where a layer is not sliceable: strides, bit planes of codes) the
    cheapest by the estimates."""
    if not step.packed_in:
        return "codes"
    if schedule in ("dense", "sparse") or (schedule == "sliced" and sliceable(step)):
        return schedule
    costs = _bit_costs(step)  # (no "sliced" where the layer is not sliceable)
    if "sliced" in costs and _sliced_flash(step) > SLICED_FLASH * _dense_flash(step):
        del costs["sliced"]  # entries cost flash: only for sparse layers unless asked for
    return min(costs, key=costs.__getitem__)


def _dense_flash(step: ConvStep) -> int:
    """Bytes of the layer's weights as bits (the dense form)."""
    return 4 * _window_words(step) * step.geo.o * len(step.masks)


def _sliced_flash(step: ConvStep) -> int:
    """Bytes of the sliced form's entries (a word index and a shift each)."""
    _, psw, _ = _slice_shape(step)
    taps, _ = _slice_entries(step)
    word = _SIZE[_unsigned(step.geo.c * psw)]
    return (word + 1) * sum(len(t) for t in taps)


def cost(step: ConvStep, schedule: str) -> float:
    """Instruction estimate of one layer in the kernel ``choose`` gives it."""
    how = choose(step, schedule)
    return codes_cost(step) if how == "codes" else _bit_costs(step)[how]


def code_planes(graph: Graph, schedule: str = "auto", planes: int | None = None) -> core.Schedule:
    """The schedule with the codes of up to ``k`` bits held as bit planes, wider ones as
    integers: ``k = planes`` if given, else of the ``k <= CODE_PLANES`` that the graph's code
    widths make different the one whose layers the estimates find cheapest (a tie goes to the
    wider)."""
    if planes is not None:
        return core.schedule(graph, fuse_points=True, merge_masks=True, code_planes=planes)
    best: tuple[float, core.Schedule] | None = None
    for k in range(CODE_PLANES + 1):
        sched = core.schedule(graph, fuse_points=True, merge_masks=True, code_planes=k)
        if k and not any(t.storage is Storage.BIT_PLANES and t.planes == k for t in sched.tensors):
            continue  # no code is k bits wide: the schedule of k - 1
        total = sum(cost(s, schedule) for s in sched.steps if isinstance(s, ConvStep))
        if best is None or total <= best[0]:
            best = (total, sched)
    assert best is not None
    return best[1]


def _scratch(step: ConvStep, sched: str) -> int:
    """Bytes of the layer's window (every input plane's; and, dense with padding, the ones of
    each mask per tap, ``tap_type``)."""
    g = step.geo
    if not step.packed_in:
        return _SIZE.get(step.src.ctype, 4) * g.c * g.kh * g.kw
    m = len(step.masks)
    taps = m * g.o * g.kh * g.kw if sched == "dense" and (g.ph, g.pw) != (0, 0) else 0
    k = _window_words(step)
    if sched == "sliced":
        _, psw, _ = _slice_shape(step)
        taps_, _ = _slice_entries(step)
        return 4 * (k + psw * g.c) + 32 * _count_bytes(taps_) * len(taps_)
    return 4 * step.src.planes * k + _SIZE[_tap_type(g.c)] * taps


def _counter_bits(taps: list[np.ndarray]) -> int:
    """Bits of the sliced form's counters: the most entries of any (o, m) fit."""
    return max(1, max(len(t) for t in taps).bit_length())


def _count_bytes(taps: list[np.ndarray]) -> int:
    """Bytes of a count read out of those counters (eight bits each)."""
    return -(-_counter_bits(taps) // 8)


def _window_words(step: ConvStep) -> int:
    """Words of one input plane's window (``compact`` or ``[ky][kx][nw]``)."""
    g = step.geo
    return words(g.taps * g.c) if compact(step.weight, (g.ph, g.pw)) else g.taps * words(g.c)


def _tap_type(c: int) -> str:
    """C type of a count of one tap's ones (at most C)."""
    return "uint8_t" if c < 256 else "uint16_t"


def _unsigned(hi: int) -> str:
    """The narrowest unsigned C type holding ``0 .. hi``."""
    return "uint8_t" if hi < 1 << 8 else "uint16_t" if hi < 1 << 16 else "uint32_t"


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


def _check_window(step: ConvStep) -> None:
    """T and every S are counted in int32 (over bit planes as sums of ``u = value - lo`` first):
    refuse a window whose sums could leave it."""
    g = step.geo
    lo, hi = step.value_range
    span = max(-lo, hi, hi - lo)
    if g.c * g.kh * g.kw * span >= 1 << 31:
        raise UnsupportedGraph(
            f"layer '{step.name}': a window of {g.c * g.kh * g.kw} taps of values in"
            f" [{lo}, {hi}] can overflow int32; at most {((1 << 31) - 1) // span} taps"
        )


def _bitconv(step: ConvStep, schedule: str, src, dst, win, out, add, bit_adds, points) -> BitConv:
    g = step.geo
    o, c, kh, kw = step.weight.shape
    masks = step.masks
    packed_taps = compact(step.weight, (g.ph, g.pw))
    per_mask = [_packed(mk.weight, packed_taps) for mk in masks]
    k = per_mask[0][0].shape[1]
    weights: tuple[str, ...] = ()
    start, idx, mask, hot_start, hot = [0], [], [], [0], []
    if schedule == "dense":
        weights = tuple(_hex(v) for r in range(o) for packed, _ in per_mask for v in packed[r])
    elif schedule == "sparse":
        for r in range(o):
            for packed, ones in per_mask:
                for j in np.nonzero(ones[r] > 1)[0]:
                    idx.append(int(j))
                    mask.append(_hex(packed[r, j]))
                for j in np.nonzero(ones[r] == 1)[0]:
                    hot.append(int(j) << 5 | (int(packed[r, j]).bit_length() - 1))
                start.append(len(idx))
                hot_start.append(len(hot))
    # Border positions subtract the ones of b on their padded taps: the sparse and sliced
    # forms keep them per (o, m, ky, kx) in flash, the dense form counts them from its weight
    # words into the arena when the layer starts.
    padded = (g.ph, g.pw) != (0, 0) and schedule in ("sparse", "sliced")
    taps = [mk.weight.sum(axis=1).reshape(o, -1) for mk in masks]  # (o, kh*kw) each
    nnz_tap = tuple(int(v) for r in range(o) for t in taps for v in t[r]) if padded else ()
    nnz = tuple(int(t[r].sum()) for r in range(o) for t in taps)
    if k << 5 >= 1 << 32:
        raise UnsupportedGraph(f"layer '{step.name}': a window of {k} words is too large")
    _check_window(step)
    sliced = _sliced(step, win + 4 * k) if schedule == "sliced" else None
    return BitConv(
        **step.view_fields(),
        codes=CodesOut.of(step),
        out=out,
        add=add,
        bit_adds=bit_adds,
        points=points,
        schedule=schedule,
        nw=words(c),
        onw=words(o),
        masks=len(masks),
        planes_in=step.src.planes,
        wj=step.src.plane_weights,
        off=step.src.tap_offset,
        compact=packed_taps,
        weights=weights,
        start=tuple(start),
        idx=tuple(idx),
        mask=tuple(mask),
        hot_start=tuple(hot_start),
        hot=tuple(hot),
        entry_type="uint16_t" if k << 5 < 1 << 16 else "uint32_t",
        nnz=nnz,
        nnz_type=_unsigned(max(nnz)),
        nnz_tap=nnz_tap,
        tap_type=_tap_type(c),
        coef=coefficients(step),
        src=src,
        dst=dst,
        win=win,
        sliced=sliced,
    )


def _sliced(step: ConvStep, planes: int) -> Sliced:
    """The sliced form's tables; its planes start at arena byte ``planes``, after the window."""
    g = step.geo
    wp, psw, chunks = _slice_shape(step)
    taps, flip = _slice_entries(step)
    start, word, shift = [0], [], []
    for t in taps:
        d = t[:, 1] * wp + t[:, 2]
        word += (t[:, 0] * psw + d // 32).tolist()
        shift += (d % 32).tolist()
        start.append(len(word))
    return Sliced(
        wp=wp,
        psw=psw,
        chunks=chunks,
        lb=_counter_bits(taps),
        start=tuple(start),
        word=tuple(word),
        shift=tuple(shift),
        flip=tuple(flip),
        word_type=_unsigned(max(word, default=0)),
        start_type=_unsigned(start[-1]),
        c=g.c,
        planes=planes,
        counters=planes + 4 * psw * g.c,
    )


def _codeconv(step: ConvStep, src, dst, win, out, add, bit_adds, points) -> CodeConv:
    g = step.geo
    o = g.o
    masks = step.masks
    per_mask = [np.array(_pack_channels(mk.weight.reshape(o, -1))).reshape(o, -1) for mk in masks]
    _check_window(step)
    return CodeConv(
        **step.view_fields(),
        codes=CodesOut.of(step),
        out=out,
        add=add,
        bit_adds=bit_adds,
        points=points,
        onw=words(o),
        masks=len(masks),
        src_type=step.src.ctype,
        kwords=words(g.c * g.kh * g.kw),
        weights=tuple(_hex(v) for r in range(o) for packed in per_mask for v in packed[r]),
        coef=coefficients(step),
        src=src,
        dst=dst,
        win=win,
    )


def _pool_of(t: Tensor) -> str | None:
    if t.output:
        return None
    return "planes" if t.storage is Storage.PLANE else "arena"


def lower(graph: Graph, name: str, schedule: str = "auto", planes: int | None = None) -> McuView:
    """The view of a lowered graph; ``planes`` fixes the widest codes held as bit planes
    (default: chosen by ``code_planes``)."""
    if schedule not in SCHEDULES:
        raise BncError(f"unknown schedule '{schedule}'; choose one of: {', '.join(SCHEDULES)}")
    sched = code_planes(NarrowThresholds().apply(graph), schedule, planes)
    inp = sched.input
    choices = {s.index: choose(s, schedule) for s in sched.steps if isinstance(s, ConvStep)}
    scratch = {
        s.index: ("arena", _scratch(s, choices[s.index]))
        for s in sched.steps
        if isinstance(s, ConvStep)
    }
    plan = core.plan_memory(sched, _pool_of, Tensor.nbytes, scratch)

    def at(t: Tensor) -> int:
        return plan.offset(t) if not t.output else -1

    def expr(t: Tensor) -> str:
        if t.output:
            return "acc"
        if t.storage is Storage.PLANE:
            return f"(bnc_planes + {plan.offset(t) // 8})"
        return f"BNC_AT({t.ctype}, {plan.offset(t)})"

    def elem(t: Tensor) -> str:
        return t.ctype

    layers: list[Layer] = []
    for step in sched.steps:
        if isinstance(step, ConvStep):
            win = plan.offset((step.index, "scratch"))
            plane = step.mode is Mode.PLANE
            out = expr(step.dst) if plane else ""
            add = expr(step.acc_in) if step.acc_in is not None else ""
            bits_ = tuple(b.view(expr(b.src)) for b in step.bit_adds)
            dst = at(step.dst) if not plane else -1
            pts = _points(step, expr)
            if choices[step.index] == "codes":
                layers.append(_codeconv(step, at(step.src), dst, win, out, add, bits_, pts))
            else:
                how = choices[step.index]
                layers.append(_bitconv(step, how, at(step.src), dst, win, out, add, bits_, pts))
        elif isinstance(step, PoolStep) and step.src.storage is not Storage.BITS:
            layers.append(pool_view(step, expr, elem))
        elif isinstance(step, PoolStep):
            ands = step.and_mask.any()
            mask = tuple(_hex(v) for v in _pack_channels(step.and_mask[None])) if ands else ()
            layers.append(
                Pool(**step.geo.fields(), index=step.index, name=step.name,
                     nw=words(step.geo.c), and_words=mask, src=at(step.src), dst=at(step.dst))
            )  # fmt: skip
        elif isinstance(step, ConcatStep | SumPoolStep):
            layers.append(data_view(step, expr, elem))
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
        input_type=inp.dst.ctype,
        code_planes=max(
            (t.planes for t in sched.tensors if t.storage is Storage.BIT_PLANES), default=0
        ),
        layers=tuple(layers),
        arena=arena,
    )
