"""Lowered IR → the FPGA view model: the streaming design, every decision made here.

The design is a chain of engines, one per layer, joined by ping-pong frame buffers
(``hw/bnc_framebuf.v``): an engine starts a frame when its input bank is full and its output
bank is free, so all engines work on successive frames at once.

* The input stream (``hw/bnc_instream.v``) writes one pixel per beat: the input quantizer's
  codes, ``QW``-bit two's complement, channel ``c`` at bits ``[c*QW +: QW]``, or one bit per
  channel after ``Sign``.
* A convolution engine reads its input frame one window tap per cycle
  (``hw/bnc_window.v``): for each output pixel, ``G`` passes over the ``KH*KW`` taps. Each
  pass computes ``PE`` output channels in ``PE`` lanes (channel ``o = g*PE + p`` in lane ``p``
  on pass ``g``). Per tap, ``T`` (all-ones kernel) is counted once and shared by the lanes;
  lane ``p`` adds ``S = 2*popcount(x & b) - popcount(b)`` (bits) or the codes under ``b``
  (codes). A padded tap adds nothing. The weights are constants: a lane's column for input
  channel ``c`` is the function ``widx -> b[o(g), c, tap]``; a column that is zero on every
  pass and tap (the kernels are zero) is not generated at all, a one-hot column is the input
  bit ANDed with a shared tap decode, an all-ones column is the bare wire. After the last
  tap the lane's threshold unit tests ``t'*T + s'*S + c' >= 0`` with the narrowed
  coefficients of ``bnc.ir.narrow`` (exact on every reachable ``(T, S)``).
* The output engine is the same with one lane; it writes ``t*T + s*S`` (the network's int64
  accumulator) per channel, and ``hw/bnc_outstream.v`` streams the words out in
  ``(y, x, channel)`` order.
* A max-pool engine reads the same windows and ORs / ANDs bits (``hw/bnc_bitpool.v``).

Cycle model (checked against Verilator in the tests): an engine needs
``OH*OW*G*KH*KW + ENGINE_OVERHEAD`` cycles per frame, the input stream ``H*W``, the
output stream ``words + STREAM_OVERHEAD``. Frames overlap, so the design takes a new frame
every ``max`` of those (the initiation interval) and the latency is about their sum.

Folding: with a frame budget ``B = clock / fps``, each convolution engine takes the number of
passes ``G`` whose estimated LUT count is least among those that fit ``B``. Without an fps
target, ``B`` is the slowest unfolded stage, so the design runs as fast as its slowest layer
allows and every other layer folds down to match it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bnc.backends import core
from bnc.backends.core import ConvStep, Geometry, PoolStep, UnsupportedGraph
from bnc.errors import BncError
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.narrow import bits
from bnc.ir.passes.narrow import NarrowThresholds

ENGINE_OVERHEAD = 5  # start, the window's register, read latency, accumulate, write
STREAM_OVERHEAD = 3
IN_OVERHEAD = 0
ACC_W = 64
BLOCK_ROWS = 64  # weight columns deeper than this go to a block ROM instead of LUTs
BLOCK_BUFFER_BITS = 1024  # frame buffers (both banks) of this many bits go to block RAM


@dataclass(frozen=True)
class Column:
    """One generated input of a lane: position ``c`` of the input chunk (input channel
    ``f * SIMD + c`` on chunk ``f``) under the weights.

    ``kind`` is ``wire`` (b = 1 on every row), ``tap`` (b = 1 on row ``row`` only) or ``rom``
    (``rom`` is the Verilog literal of the rows, row 0 the least significant bit)."""

    c: int
    kind: str
    row: int
    rom: str


@dataclass(frozen=True)
class Lane:
    index: int
    channels: tuple[int, ...]  # per pass; -1 where the pass has no channel for this lane
    columns: tuple[Column, ...]
    block_rom: tuple[str, ...]  # block style: per row, {popcount of b, live columns' bits} (hex)
    nb: str  # logic style, bit input: per row, popcount of b (a packed literal)

    @property
    def width(self) -> int:
        return len(self.columns)


@dataclass(frozen=True)
class Unit:
    """A threshold unit, time-shared: on sequencer step ``i`` of pass ``g`` it tests lane
    ``i * U + index``; ``rom[g * L + i]`` holds that channel's ``{c, s, t}`` (hex)."""

    index: int
    rom: tuple[str, ...]


@dataclass(frozen=True)
class Window(Geometry):
    """What every engine shares: its place, its input and output sizes and the window the
    sliding-window generator walks (``G`` passes per output pixel)."""

    index: int = 0
    name: str = ""
    in_lat: int = 1  # the input buffer's read latency

    @property
    def rlat(self) -> int:
        """Cycles from read address to data: the input buffer's (and see ``ConvEngine``)."""
        return self.in_lat

    @property
    def controls(self) -> tuple[tuple[str, int], ...]:
        """The window's per-read signals the engine's pipeline carries: (name, width)."""
        return (("issue", 1), ("in", 1), ("first", 1), ("last", 1), ("fl", 1))

    @property
    def groups(self) -> int:
        return 1

    @property
    def out_depth(self) -> int:
        return self.oh * self.ow

    @property
    def in_aw(self) -> int:
        return addr_width(self.h * self.w)

    @property
    def out_aw(self) -> int:
        return addr_width(self.out_depth)

    @property
    def cycles(self) -> int:
        return pool_cycles(self.oh, self.ow, self.kh * self.kw, self.rlat)


@dataclass(frozen=True)
class ConvEngine(Window):
    kind: ClassVar[str] = "conv"
    passes: int = 1  # G
    pe: int = 1  # lanes (output channels per pass): PE = L * U
    chunks: int = 1  # F: the input channels of a tap are read in F chunks of SIMD
    simd: int = 1
    units: int = 1  # U threshold units ...
    serial: int = 1  # ... each testing L lanes one after another
    bits_in: bool = True
    flat: bool = False  # bits, no padding: T and S count ones (their constants are in c)
    qw: int = 1  # bits per input element (codes: two's complement)
    sum_w: int = 2  # width of T and S
    tap_w: int = 2  # width of one step's T or S contribution
    coef_w: int = 2
    output: bool = False
    block: bool = False  # weight rows in a block ROM (registered read)
    rows: int = 1
    lanes: tuple[Lane, ...] = ()
    thresholds: tuple[Unit, ...] = ()
    coefs: tuple[str, str, str] = ("", "", "")  # output engine: per pass t, s, c (packed)
    one_hot_rows: tuple[int, ...] = ()  # rows some tap column decodes
    live: int = 0  # generated columns over all lanes
    dead: int = 0  # columns not generated (zero on every row)
    luts: int = 0  # the analytic estimate (``conv_luts``)

    @property
    def groups(self) -> int:
        return self.passes

    @property
    def steps(self) -> int:
        """Reads per pass: every tap, chunk by chunk."""
        return self.kh * self.kw * self.chunks

    @property
    def in_word(self) -> int:
        return self.c * self.qw

    @property
    def rlat(self) -> int:
        """Block-ROM weights read in two cycles, and the input is matched to them."""
        return 2 if self.block else self.in_lat

    @property
    def controls(self) -> tuple[tuple[str, int], ...]:
        return (*super().controls, ("widx", self.xw), ("grp", self.gw), ("chk", self.fw))

    @property
    def cycles(self) -> int:
        return conv_cycles(self.oh, self.ow, self.steps, self.passes, self.serial, self.output,
                           self.rlat)  # fmt: skip

    @property
    def nb(self) -> bool:
        """The lanes read popcount(b) per row (bits with padding: S = 2*pc - popcount(b)
        over the taps inside the image)."""
        return self.bits_in and not self.flat

    @property
    def chunk_word(self) -> int:
        return self.simd * self.qw

    @property
    def last_chunk(self) -> int:
        """Real channels in the last chunk (the rest of it is zero padding)."""
        return self.c - (self.chunks - 1) * self.simd

    @property
    def out_word(self) -> int:
        return ACC_W if self.output else self.o

    @property
    def out_depth(self) -> int:
        return self.oh * self.ow * (self.o if self.output else 1)

    @property
    def xw(self) -> int:
        return addr_width(self.rows)

    @property
    def gw(self) -> int:
        return addr_width(self.groups)

    @property
    def fw(self) -> int:
        return addr_width(self.chunks)

    @property
    def sw_(self) -> int:
        return addr_width(self.serial)

    @property
    def crom_depth(self) -> int:
        return self.passes * self.serial

    @property
    def caw(self) -> int:
        return addr_width(self.crom_depth)

    @property
    def product_w(self) -> int:
        return self.coef_w + self.sum_w + 1


@dataclass(frozen=True)
class PoolEngine(Window):
    kind: ClassVar[str] = "pool"
    and_mask: str = "0"

    @property
    def in_word(self) -> int:
        return self.c

    @property
    def out_word(self) -> int:
        return self.c


Engine = ConvEngine | PoolEngine


@dataclass(frozen=True)
class FpgaView:
    name: str
    engines: tuple[Engine, ...]
    in_c: int
    in_h: int
    in_w: int
    in_bits: bool  # Sign input (one bit per channel), else quantizer codes
    qw: int
    scale: float
    qmin: int
    qmax: int
    out_c: int
    out_h: int
    out_w: int
    clock_mhz: float
    fps_target: float | None
    budget: int  # cycles per frame the folding aimed for
    input_step: core.InputStep  # how the host turns floats into the stream

    @property
    def in_word(self) -> int:
        return self.in_c * self.qw

    @property
    def in_words32(self) -> int:
        return (self.in_word + 31) // 32

    @property
    def out_words(self) -> int:
        return self.out_c * self.out_h * self.out_w

    @property
    def buffers(self) -> tuple[Buffer, ...]:
        first = Buffer(0, self.in_word, self.in_h * self.in_w)
        rest = (Buffer(e.index + 1, e.out_word, e.out_depth) for e in self.engines)
        return (first, *rest)

    def stage_cycles(self) -> list[tuple[str, int]]:
        """Cycles per frame of every stage: the input stream, each engine, the output."""
        return [
            ("input stream", self.in_h * self.in_w + IN_OVERHEAD),
            *((f"layer '{e.name}'", e.cycles) for e in self.engines),
            ("output stream", self.out_words + STREAM_OVERHEAD + self.buffers[-1].latency - 1),
        ]

    @property
    def interval(self) -> int:
        """Cycles between frames in steady state (the slowest stage)."""
        return max(c for _, c in self.stage_cycles())

    @property
    def latency(self) -> int:
        """Cycles from a frame's first input beat to its last output word (an estimate: the
        stages run one after another on one frame)."""
        return sum(c for _, c in self.stage_cycles())

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.interval


def addr_width(depth: int) -> int:
    """Bits of an address into ``depth`` words (at least 1), as ``hw/`` computes it."""
    return max(1, (depth - 1).bit_length())


@dataclass(frozen=True)
class Buffer:
    """The ping-pong frame buffer in front of engine ``index`` (the last one feeds the
    output stream)."""

    index: int
    width: int
    depth: int

    @property
    def aw(self) -> int:
        return addr_width(self.depth)

    @property
    def block(self) -> bool:
        """In block RAM: LUT RAM costs about two thirds of a LUT per bit of width at any
        depth, so a buffer of at least ``BLOCK_BUFFER_BITS`` goes to block RAM."""
        return 2 * self.depth * self.width >= BLOCK_BUFFER_BITS

    @property
    def latency(self) -> int:
        """Cycles from read address to data: block RAM reads through its output register."""
        return 2 if self.block else 1


def pool_cycles(oh: int, ow: int, taps: int, rlat: int = 1) -> int:
    return oh * ow * taps + ENGINE_OVERHEAD + rlat - 1


def conv_cycles(
    oh: int,
    ow: int,
    steps: int,
    groups: int,
    serial: int = 1,
    output: bool = True,
    rlat: int = 1,
) -> int:
    """An engine's cycles per frame: every read, and the pipeline after the last: a register
    after the popcounts, the multipliers' operands (output engine) or the sequencer's ``L``
    steps and its ROM read (threshold engine), the products, the write."""
    tail = 3 if output else serial + 3
    return oh * ow * steps * groups + ENGINE_OVERHEAD + rlat - 1 + tail


def _code_width(lo: int, hi: int) -> int:
    return bits(min(lo, 0), max(hi, 0))


def _hex(bits_: list[int]) -> str:
    """A Verilog literal of bits (index 0 least significant)."""
    return _pack([int(b) for b in bits_], 1)


def _word(values: list[int], width: int) -> str:
    """The hex digits of ``width``-bit two's complement fields, value 0 least significant
    (a ``$readmemh`` line)."""
    v = 0
    for i, x in enumerate(values):
        v |= (x & ((1 << width) - 1)) << (i * width)
    return f"{v:x}"


def _pack(values: list[int], width: int) -> str:
    """A Verilog literal of ``width``-bit two's complement fields, value 0 least significant."""
    return f"{max(1, len(values) * width)}'h{_word(values, width)}"


@dataclass(frozen=True)
class Fold:
    """How a convolution engine is folded: ``G`` passes of ``PE`` lanes per output pixel,
    each tap read in ``F`` chunks of ``SIMD`` channels, ``U`` threshold units of ``L``
    lanes each (``PE = L * U``, ``L <= KH * KW * F`` so a pass's tests end before the next
    pass's sums do)."""

    passes: int
    pe: int
    chunks: int
    simd: int
    units: int
    serial: int
    taps: int

    @property
    def rows(self) -> int:
        """Weight rows per lane: every step of a pixel."""
        return self.passes * self.taps * self.chunks

    @property
    def block(self) -> bool:
        return self.rows > BLOCK_ROWS

    def tap_w(self, mag: int) -> int:
        """Width of one step's T or S (``SIMD`` values of magnitude ``mag``, with room for
        2 * popcount)."""
        return bits(self.simd * mag) + 1

    @classmethod
    def of(cls, o: int, c: int, taps: int, passes: int, chunks: int, final: bool) -> Fold:
        simd = math.ceil(c / chunks)
        chunks = math.ceil(c / simd)
        if final:
            return cls(passes, 1, chunks, simd, 1, 1, taps)
        pe = math.ceil(o / passes)
        passes = math.ceil(o / pe)
        units = math.ceil(pe / (taps * chunks))
        serial = math.ceil(pe / units)
        return cls(passes, serial * units, chunks, simd, units, serial, taps)

    def grid(self, weight: np.ndarray) -> np.ndarray:
        """``[g, p, f, j, tap]``: ``b[g*PE + p, f*SIMD + j, tap]``, zero where either index
        runs past the layer."""
        o, c, kh, kw = weight.shape
        full = np.zeros((self.passes * self.pe, self.chunks * self.simd, kh * kw), dtype=bool)
        full[:o, :c] = weight.reshape(o, c, kh * kw)
        return full.reshape(self.passes, self.pe, self.chunks, self.simd, kh * kw)

    def live(self, weight: np.ndarray) -> int:
        """Generated columns: lane ``p`` needs chunk position ``j`` unless every weight it
        would meet there, on every pass, chunk and tap, is zero."""
        return int(self.grid(weight).any(axis=(0, 2, 4)).sum())


def _rows(fold: Fold, weight: np.ndarray) -> np.ndarray:
    """``[p, j, row]`` with ``row = (g * taps + tap) * F + f``: the weight bit lane ``p``'s
    column ``j`` meets on each step of a pixel."""
    grid = fold.grid(weight)  # g, p, f, j, tap
    return grid.transpose(1, 3, 0, 4, 2).reshape(fold.pe, fold.simd, -1).astype(np.uint8)


def _lanes(
    fold: Fold, weight: np.ndarray, block: bool, nb_w: int
) -> tuple[tuple[Lane, ...], int, int]:
    """The lanes of a fold; ``nb_w`` bits of popcount(b) end each block-ROM row (0: none)."""
    o = weight.shape[0]
    rows = _rows(fold, weight)
    lanes, live, dead = [], 0, 0
    for p in range(fold.pe):
        chans = tuple(g * fold.pe + p if g * fold.pe + p < o else -1 for g in range(fold.passes))
        grid = rows[p]
        cols = []
        for j in range(fold.simd):
            col = grid[j]
            ones = int(col.sum())
            if ones == 0:
                dead += 1
                continue
            live += 1
            if block:
                cols.append(Column(j, "rom", 0, ""))
            elif ones == len(col):
                cols.append(Column(j, "wire", 0, ""))
            elif ones == 1:
                cols.append(Column(j, "tap", int(np.argmax(col)), ""))
            else:
                cols.append(Column(j, "rom", 0, _hex(list(col))))
        live_j = [col.c for col in cols]
        nb = [int(v) for v in grid.sum(axis=0)]
        block_rom: tuple[str, ...] = ()
        if block:
            block_rom = tuple(
                _word([*map(int, grid[live_j, r]), *((nb[r] >> k) & 1 for k in range(nb_w))], 1)
                for r in range(grid.shape[1])
            )
        lanes.append(Lane(p, chans, tuple(cols), block_rom, _pack(nb, max(nb_w, 1))))
    return tuple(lanes), live, dead


def _units(fold: Fold, coefs: list[tuple[int, int, int]], coef_w: int) -> tuple[Unit, ...]:
    """Unit ``u``'s ROM: entry ``g * L + i`` is ``{c, s, t}`` of channel
    ``g * PE + i * U + u`` (zeros past the layer)."""
    units = []
    for u in range(fold.units):
        words = []
        for g in range(fold.passes):
            for i in range(fold.serial):
                ch = g * fold.pe + i * fold.units + u
                t, s_, c = coefs[ch] if ch < len(coefs) else (0, 0, 0)
                words.append(_word([t, s_, c], coef_w))
        units.append(Unit(u, tuple(words)))
    return tuple(units)


# The LUT model of a convolution engine (fitted to yosys synth_xilinx counts of CNV's layers).
COL_LUTS = 3.0  # a 1-bit column from a LUT ROM: the weight bit, the AND, its share of the sum
COL_BLOCK_LUTS = 2.2  # a 1-bit column whose weights come from a block ROM
LANE_LUTS = 2  # per bit of the lane's sum: the step's S and the accumulator
UNIT_LUTS = 2  # per bit of the plane: a threshold unit's adders
MUX_LUTS = 0.3  # per input bit per chunk: the chunk select
UNIT_DSP_LUTS = 100  # the price of a threshold unit's two DSP multipliers, in LUTs


def conv_luts(fold: Fold, live: int, block: bool, qw: int, sum_w: int, coef_w: int) -> int:
    """The analytic LUT estimate of a convolution engine: its generated columns, the lanes'
    accumulators, the threshold units (their operand selects over ``L`` lanes, and their DSPs
    at a price in LUTs), the chunk select and the shared ``T`` sum."""
    col = COL_BLOCK_LUTS if block else COL_LUTS
    plane_w = coef_w + sum_w + 1
    units = fold.units * (UNIT_LUTS * plane_w + (sum_w * fold.serial) // 3 + UNIT_DSP_LUTS)
    mux = MUX_LUTS * fold.simd * qw * fold.chunks if fold.chunks > 1 else 0
    return round(live * qw * col + fold.pe * LANE_LUTS * sum_w + units + mux + fold.simd * qw)


def _folds(step: ConvStep, budget: int, in_lat: int) -> list[Fold]:
    """The folds to weigh: for every number of passes, the most chunks that fit the budget
    (fewest columns) and one chunk (no select); the fastest fold if none fits."""
    g = step.geo
    o, c = step.weight.shape[:2]
    taps = g.kh * g.kw
    passes = [o] if step.final else sorted({math.ceil(o / pe) for pe in range(1, o + 1)})
    chunks = sorted({math.ceil(c / simd) for simd in range(1, c + 1)})
    folds, fastest = [], None
    for gp in passes:
        fits = []
        for f in chunks:
            fold = Fold.of(o, c, taps, gp, f, step.final)
            cyc = conv_cycles(g.oh, g.ow, taps * fold.chunks, fold.passes, fold.serial,
                              step.final, 2 if fold.block else in_lat)  # fmt: skip
            if fastest is None or cyc < fastest[0]:
                fastest = (cyc, fold)
            if cyc <= budget:
                fits.append(fold)
        folds += [fits[0], fits[-1]] if len(fits) > 1 else fits
    return folds or [fastest[1]]  # type: ignore[index]


def _conv(index: int, step: ConvStep, budget: int, in_lat: int) -> ConvEngine:
    g = step.geo
    o, c, kh, kw = step.weight.shape
    final = step.final
    bits_in = step.bits_in
    lo, hi = step.value_range
    qw = 1 if bits_in else _code_width(step.src.lo, step.src.hi)
    mag = max(-lo, hi)
    taps = kh * kw
    # the thresholds are narrowed in the IR (NarrowThresholds); the output plane is (t, s, 0)
    coefs = list(zip(step.t, step.s, step.c, strict=True))
    # Without padding every step is inside the image: T = 2*PT - C*taps and S = 2*P - K_o
    # over a pass (PT, P the ones counted, K_o the ones of b[o]), so the lanes count ones and
    # t*T + s*S + c = 2t*PT + 2s*P + (c - t*C*taps - s*K_o), exactly.
    flat = bits_in and not final and g.ph == 0 and g.pw == 0
    if flat:
        ones = step.weight.reshape(o, -1).sum(axis=1)
        coefs = [(2 * t, 2 * s_, c_ - t * c * taps - s_ * int(k))
                 for (t, s_, c_), k in zip(coefs, ones, strict=True)]  # fmt: skip
    coef_w = bits(*(v for trip in coefs for v in trip))
    sum_w = bits(c * taps * mag)
    cost = {}
    for fold in _folds(step, budget, in_lat):
        cost[fold] = conv_luts(fold, fold.live(step.weight), fold.block, qw,
                               max(sum_w, fold.tap_w(mag)), coef_w)  # fmt: skip
    fold = min(cost, key=lambda f: (cost[f], -f.passes * f.chunks))
    tap_w = fold.tap_w(mag)
    sum_w = max(sum_w, tap_w)
    lanes, live, dead = _lanes(fold, step.weight, fold.block, tap_w if bits_in and not flat else 0)
    one_hot = sorted({col.row for lane in lanes for col in lane.columns if col.kind == "tap"})
    units = () if final else _units(fold, coefs, coef_w)
    out_coefs = tuple(_pack([coefs[ch][k] for ch in range(o)], coef_w) for k in range(3))
    return ConvEngine(
        **g.fields(), index=index, name=step.name, in_lat=in_lat,
        passes=fold.passes, pe=fold.pe, chunks=fold.chunks, simd=fold.simd, units=fold.units,
        serial=fold.serial, bits_in=bits_in, flat=flat, qw=qw, sum_w=sum_w, tap_w=tap_w,
        coef_w=coef_w,
        output=final, block=fold.block, rows=fold.rows, lanes=lanes, thresholds=units,
        coefs=out_coefs if final else ("", "", ""), one_hot_rows=tuple(one_hot),
        live=live, dead=dead, luts=cost[fold],
    )  # fmt: skip


def _min_cycles(step: ConvStep) -> int:
    g = step.geo
    o, c = step.weight.shape[:2]
    fold = Fold.of(o, c, g.kh * g.kw, o if step.final else 1, 1, step.final)
    return conv_cycles(g.oh, g.ow, g.kh * g.kw, fold.passes, fold.serial, step.final)


def _one_bit(graph: Graph) -> None:
    """The engines compute 1-bit layers: refuse k-bit activations and multi-mask weights."""
    for node in graph.nodes:
        op = node.op
        if isinstance(op, O.MultiThreshold | O.Requantize):
            raise UnsupportedGraph(
                f"fpga: layer '{op.name}' has k-bit activations, which the fpga target does not"
                " build yet (it builds 1-bit activations; use --target c, arm64, armv7 or"
                " cortex-m4/m7)"
            )
        if isinstance(op, O.Threshold | O.OutputAffine):
            convs = [graph.producer(a) for a in node.args]
            reads = [(c.args[0], c.op.weight.shape, c.op.stride, c.op.padding)  # type: ignore
                     for c in convs]  # fmt: skip
            if len(set(reads)) < len(reads):
                raise UnsupportedGraph(
                    f"fpga: layer '{op.name}' has multi-level weights (several binary masks),"
                    " which the fpga target does not build yet (it builds two-level weights;"
                    " use --target c, arm64, armv7 or cortex-m4/m7)"
                )


def _chain(sched: core.Schedule) -> None:
    """The streaming design is a chain of engines: refuse any other graph with one line."""
    prev = sched.input.dst
    for step in sched.steps:
        if isinstance(step, core.ConcatStep):
            raise UnsupportedGraph(f"fpga: concatenation ('{step.name}') is not supported yet")
        if isinstance(step, core.SumPoolStep):
            raise UnsupportedGraph(
                f"fpga: global average pools ('{step.name}') are not supported yet"
            )
        if isinstance(step, ConvStep) and (
            step.adds or step.dst.storage is core.Storage.PLANE and not step.final
        ):
            raise UnsupportedGraph(f"fpga: residual adds ('{step.name}') are not supported yet")
        if step.src is not prev:
            raise UnsupportedGraph(
                f"fpga: layer '{step.name}' reads a tensor that another layer also reads"
                " (fan-out); only chains stream yet"
            )
        prev = step.dst


def lower(
    graph: Graph, name: str, fps_target: float | None = None, clock_mhz: float | None = None
) -> FpgaView:
    clock = 100.0 if clock_mhz is None else float(clock_mhz)
    if not clock > 0 or not math.isfinite(clock):
        raise BncError(f"--clock-mhz must be a positive number of MHz, not {clock_mhz!r}")
    if fps_target is not None and (not fps_target > 0 or not math.isfinite(fps_target)):
        raise BncError(f"--fps-target must be a positive frame rate, not {fps_target!r}")
    _one_bit(graph)
    sched = core.schedule(NarrowThresholds().apply(graph))
    _chain(sched)
    inp = sched.input
    c0, h0, w0 = graph.input.shape
    if not inp.sign:
        in_bits, qw = False, _code_width(inp.dst.lo, inp.dst.hi)
        scale, qmin, qmax = inp.scale, inp.qmin, inp.qmax
    else:
        in_bits, qw, scale, qmin, qmax = True, 1, 1.0, 0, 1
    out_shape = sched.output.shape

    # The frame budget: the fps target, or the slowest stage at its fastest.
    floor = [h0 * w0 + IN_OVERHEAD, out_shape[0] * out_shape[1] * out_shape[2] + STREAM_OVERHEAD]
    for step in sched.steps:
        if isinstance(step, ConvStep):
            floor.append(_min_cycles(step))
        elif isinstance(step, PoolStep):
            floor.append(pool_cycles(step.geo.oh, step.geo.ow, step.geo.kh * step.geo.kw))
    if fps_target is None:
        budget = max(floor)
    else:
        budget = max(1, int(clock * 1e6 // fps_target))

    engines: list[Engine] = []
    feed = Buffer(0, c0 * qw, h0 * w0)  # each engine's input buffer
    for step in sched.steps:
        in_lat = feed.latency
        if isinstance(step, ConvStep):
            engines.append(_conv(len(engines), step, budget, in_lat))
        elif isinstance(step, PoolStep):
            g = step.geo
            engines.append(
                PoolEngine(
                    **g.fields(), index=len(engines), name=step.name, in_lat=in_lat,
                    and_mask=_hex(list(step.and_mask.astype(np.uint8))),
                )
            )  # fmt: skip
        else:
            continue
        feed = Buffer(len(engines), engines[-1].out_word, engines[-1].out_depth)
    if not engines or not isinstance(engines[-1], ConvEngine) or not engines[-1].output:
        raise UnsupportedGraph("the network must end with its output layer (a binary layer)")
    return FpgaView(
        name, tuple(engines), c0, h0, w0, in_bits, qw, scale, qmin, qmax, *out_shape,
        clock_mhz=clock, fps_target=fps_target, budget=budget, input_step=inp,
    )  # fmt: skip
