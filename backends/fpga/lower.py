"""Lowered IR → the FPGA view model: the streaming design, every decision made here.

The design is a graph of engines, one per layer, joined by frame buffers
(``hw/bnc_framebuf.v``, a ring of frames): an engine starts a frame when every input holds a
full frame and every output copy has a free one, so all engines work on successive frames at
once. A tensor read by several engines (a shortcut, a concat's source) is written into one
copy per reader (stream duplication); a copy holds one frame more than the stages on the
path it skips, so no engine waits on it (``Buffer.banks``).

* The input stream (``hw/bnc_instream.v``) writes one pixel per beat: the input quantizer's
  codes, ``QW``-bit two's complement, channel ``c`` at bits ``[c*QW +: QW]``, or one bit per
  channel after ``Sign``. Every frame buffer holds a pixel per word the same way: bits, or
  codes as values ``q - zero_point``.
* A convolution engine reads its input frame one window tap per cycle, in ``F`` chunks of
  ``SIMD`` channels (``hw/bnc_window.v``): for each output pixel, ``G`` passes over the
  ``KH*KW*F`` steps. Each pass computes ``PE`` output channels in ``PE`` lanes per binary
  mask (channel ``o = g*PE + p`` in lane ``p`` on pass ``g``; multi-level weights have ``K``
  masks over the same walk). Per step, ``T`` (all-ones kernel) is counted once and shared by
  the lanes; lane ``p`` of mask ``k`` adds ``S = 2*popcount(x & b) - popcount(b)`` (bits) or
  the codes under ``b`` (codes). A padded tap adds nothing. The weights are constants: a
  lane's column for input channel ``c`` is the function ``widx -> b[o(g), c, tap]``; a column
  that is zero on every pass and tap is not generated at all, a one-hot column is the input
  bit ANDed with a shared tap decode, an all-ones column is the bare wire; deep columns go
  to block ROM. At the end of a pass the sums are held and ``U`` time-shared threshold units
  test ``L`` lanes each (``PE = L*U``), coefficients from a ROM: ``t*T + sum_k s_k*S_k + c >=
  0`` with the narrowed coefficients of ``bnc.ir.narrow`` (a bit), or the count of a
  multi-threshold's ``c_l`` the plane passes (a k-bit code).
* Shortcuts are added where a channel is tested: an identity shortcut's element (bits
  ``±s``, codes ``s*x``) and a 1x1 downsampling layer over bits (``t*T + s*S`` of one pixel),
  each read from its copy once per output pixel and carried down the pipeline with the
  steps.
* The output engine is the same with one lane per mask; it writes ``t*T + sum_k s_k*S_k``
  (the network's int64 accumulator) per channel, and ``hw/bnc_outstream.v`` streams the words
  out in ``(y, x, channel)`` order.
* A max-pool engine reads the same windows and ORs / ANDs bits or keeps the largest /
  smallest code (``hw/bnc_bitpool.v``); a global average pool sums each channel over the map
  (``hw/bnc_sumpool.v``; the division is in the next layer's coefficients); a concat engine
  reads its sources pixel by pixel and writes their channels side by side.

Sparsity in time: a convolution engine whose fold has steps (pass, tap, chunk) where every
lane's weights are zero walks a step list instead of every step (``Fold.steps``,
``hw/bnc_window.v``'s ``LIST``), so its weight rows, and its cycles, are those of the live
steps. ``T`` counts every input, so while any channel has ``t != 0`` the first pass walks
every step and the later passes reuse its ``T``; a pass keeps at least ``L`` steps (the
time-shared tests of the pass before it).

Timing: where a step reads more than ``SPLIT_W`` input bits the popcounts take two stages
(``hw/bnc_psum.v``) and each lane reads its LUT-ROM columns through its own copy of the row
index (one register drove every lane's ROMs: on the ECP5 that net alone took 11 ns).

Cycle model (Verilator measures exactly this on every test model): an engine needs
``OH*OW*R`` reads (``R`` the steps per pixel: ``G*KH*KW*F``, or a step list's) plus its
pipeline (``conv_cycles``, ``pool_cycles``), the input
stream ``H*W``, the output stream ``words + STREAM_OVERHEAD``. Frames overlap, so the design
takes a new frame every ``max`` of those (the initiation interval).

Folding: with a frame budget ``B = clock / fps``, each convolution engine takes the ``(G, F)``
whose estimated LUT count (``conv_luts``) is least among those that fit ``B``. Without an fps
target, ``B`` is the slowest unfolded stage, so the design runs as fast as its slowest layer
allows and every other layer folds down to match it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from bnc.backends import core
from bnc.backends.core import ConcatStep, ConvStep, Geometry, PoolStep, UnsupportedGraph
from bnc.errors import BncError
from bnc.ir import ops as O
from bnc.ir.graph import Graph
from bnc.ir.narrow import bits
from bnc.ir.passes.multibit import MULTI_MAX
from bnc.ir.passes.narrow import NarrowThresholds

ENGINE_OVERHEAD = 5  # start, the window's register, read latency, accumulate, write
SPLIT_W = 16  # input bits of a step above which the popcounts take two stages (bnc_psum)
SPLIT_GROUP = 8  # values per group of a split popcount
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
    """Lane ``p`` of mask ``k`` (multi-level weights have several binary masks over the same
    window walk; each has its own columns and sum): ``index = k * PE + p``."""

    index: int
    mask: int
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
    ``i * U + index``; ``rom[g * L + i]`` holds that channel's coefficients (hex): ``t``, each
    mask's ``s``, then ``c`` (one threshold) or each of a multi-threshold's, from the low end."""

    index: int
    rom: tuple[str, ...]


@dataclass(frozen=True)
class Shortcut:
    """A tensor a threshold engine adds where it tests (``core.BitAdd``, ``core.PointBranch``),
    read from its own copy (buffer ``buffer``) once per output pixel, at ``(oy*sh, ox*sw)``
    of its ``w``-wide map.

    ``add`` (an identity shortcut): channel o's element, bits as ``+2s`` where 1 (the ``-s`` is
    in c), codes as ``s * x``. ``point`` (a 1x1 layer over ``c`` bits): ``2t * popcount(x) +
    2s * popcount(x & w_o)`` (the constants are in c). Its coefficients are fields ``field``
    (and ``field + 1``) of a unit's ROM word; a point's weights are the ``c`` bits from
    ``wbit`` above the fields."""

    kind: str
    buffer: int
    c: int
    w: int
    sh: int
    sw: int
    qw: int
    lat: int
    aw: int
    field: int
    wbit: int = 0

    @property
    def word(self) -> int:
        return self.c * self.qw

    @property
    def pc_w(self) -> int:
        """Width of a point's popcounts."""
        return bits(0, self.c)


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
    masks: int = 1  # K binary masks (multi-level weights), T shared
    levels: int = 0  # thresholds per channel of a multi-threshold (k-bit codes out); 0: one bit
    code_w: int = 1  # bits per output channel (codes: two's complement q - zero_point)
    code_base: int = 0  # the code of no threshold passed: qmin - zero_point
    bits_in: bool = True
    flat: bool = False  # bits, no padding: T and S count ones (their constants are in c)
    qw: int = 1  # bits per input element (codes: two's complement)
    sum_w: int = 2  # width of T and S
    tap_w: int = 2  # width of one step's T or S contribution
    coef_w: int = 2
    output: bool = False
    block: bool = False  # weight rows in a block ROM (registered read)
    rows: int = 1  # weight rows: steps per pixel
    split: bool = False  # the popcounts in two stages (groups of ``group`` values registered)
    group: int = SPLIT_GROUP
    walk: str = ""  # the step list (``step_list``); empty: every step
    lanes: tuple[Lane, ...] = ()
    thresholds: tuple[Unit, ...] = ()
    coefs: tuple[str, ...] = ()  # output engine: per pass t, then each mask's s (packed)
    one_hot_rows: tuple[int, ...] = ()  # rows some one-hot column decodes
    shortcuts: tuple[Shortcut, ...] = ()
    term_w: int = 0  # width of a test's shortcut terms (0: none)
    live: int = 0  # generated columns over all lanes
    dead: int = 0  # columns not generated (zero on every row)
    luts: int = 0  # the analytic estimate (``conv_luts``)

    @property
    def groups(self) -> int:
        return self.passes

    @property
    def in_word(self) -> int:
        return self.c * self.qw

    @property
    def rlat(self) -> int:
        """Block-ROM weights read in two cycles, and the inputs are matched to the slowest."""
        return max([2 if self.block else self.in_lat, *(s.lat for s in self.shortcuts)])

    @property
    def controls(self) -> tuple[tuple[str, int], ...]:
        pf = (("pf", 1),) if self.shortcuts else ()
        return (*super().controls, ("widx", self.xw), ("grp", self.gw), ("chk", self.fw), *pf)

    @property
    def late(self) -> bool:
        """The tests take a stage more: the plane (and its shortcut terms) registered before
        a multi-threshold counts or a threshold with shortcuts tests."""
        return self.levels > 0 or bool(self.shortcuts)

    @property
    def cycles(self) -> int:
        return conv_cycles(self.oh, self.ow, self.rows, self.serial, self.output, self.rlat,
                           self.late, self.split)  # fmt: skip

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
        return ACC_W if self.output else self.o * self.code_w

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
        """Width of ``t*T + sum_k s_k*S_k``: K + 1 products of ``coef_w + sum_w - 2`` bits of
        magnitude each, and a bit to spare."""
        return self.coef_w + self.sum_w + self.masks.bit_length()

    @property
    def coef_words(self) -> int:
        """Fields of a unit's ROM word: t, each s_k, each c, the shortcuts' coefficients."""
        return (
            1
            + self.masks
            + max(1, self.levels)
            + sum(1 if s.kind == "add" else 2 for s in self.shortcuts)
        )

    @property
    def rom_w(self) -> int:
        """A unit's ROM word: the fields, then the points' weights."""
        return self.coef_words * self.coef_w + sum(s.c for s in self.shortcuts if s.kind == "point")

    @property
    def plane_w(self) -> int:
        """Width of a unit's plane ``t*T + sum_k s_k*S_k + c``."""
        return self.product_w + 1

    @property
    def pv_w(self) -> int:
        """Width of the registered plane: room for the shortcut terms and one c_l more."""
        return max(self.plane_w, self.term_w) + 2 if self.shortcuts else self.plane_w + 1

    @property
    def ox_w(self) -> int:
        """Width of the output x counter the shortcut reads keep."""
        return addr_width(self.ow)

    @property
    def level_w(self) -> int:
        """Width of a multi-threshold's count plus its base (signed)."""
        return max(self.code_w, bits(0, self.levels)) + 1


@dataclass(frozen=True)
class PoolEngine(Window):
    kind: ClassVar[str] = "pool"
    and_mask: str = "0"
    qw: int = 1  # bits per element: 1 for bits, else two's complement codes

    @property
    def in_word(self) -> int:
        return self.c * self.qw

    @property
    def out_word(self) -> int:
        return self.c * self.qw


@dataclass(frozen=True)
class SumEngine(PoolEngine):
    """A global average pool: one window over the whole map, each channel's values summed
    (bits as +1 / -1, codes as ``q - zero_point``) into an ``sum_w``-bit code."""

    kind: ClassVar[str] = "sum"
    sum_w: int = 2

    @property
    def out_word(self) -> int:
        return self.c * self.sum_w


@dataclass(frozen=True)
class ConcatEngine(PoolEngine):
    """Channels of every source in order, pixel by pixel (sources ``widths`` bits each)."""

    kind: ClassVar[str] = "concat"
    widths: tuple[int, ...] = ()
    lats: tuple[int, ...] = ()  # each source buffer's read latency

    @property
    def rlat(self) -> int:
        return max(self.lats)

    @property
    def in_word(self) -> int:
        return sum(self.widths)

    @property
    def out_word(self) -> int:
        return sum(self.widths)


Engine = ConvEngine | PoolEngine


@dataclass(frozen=True)
class FpgaView:
    name: str
    engines: tuple[Engine, ...]
    buffers: tuple[Buffer, ...]
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
    levels: tuple[int, ...] = ()  # each engine's pipeline stage (the input stream is 0)

    @property
    def in_word(self) -> int:
        return self.in_c * self.qw

    @property
    def in_words32(self) -> int:
        return (self.in_word + 31) // 32

    @property
    def out_words(self) -> int:
        return self.out_c * self.out_h * self.out_w

    def outputs(self, writer: int) -> tuple[Buffer, ...]:
        """The copies ``writer`` (an engine, -1 the input stream) writes."""
        return tuple(b for b in self.buffers if b.writer == writer)

    def inputs(self, reader: int) -> tuple[Buffer, ...]:
        """The buffers ``reader`` (an engine, -1 the output stream) reads."""
        return tuple(b for b in self.buffers if b.reader == reader)

    @property
    def out_buffer(self) -> Buffer:
        return self.inputs(-1)[0]

    def stage_cycles(self) -> list[tuple[str, int]]:
        """Cycles per frame of every stage: the input stream, each engine, the output."""
        out = self.out_words + STREAM_OVERHEAD + self.out_buffer.latency - 1
        return [
            ("input stream", self.in_h * self.in_w + IN_OVERHEAD),
            *((f"layer '{e.name}'", e.cycles) for e in self.engines),
            ("output stream", out),
        ]

    @property
    def interval(self) -> int:
        """Cycles between frames in steady state (the slowest stage)."""
        return max(c for _, c in self.stage_cycles())

    @property
    def latency(self) -> int:
        """Cycles from a frame's first input beat to its last output word (an estimate: the
        stages of the longest path run one after another on one frame)."""
        cycles = [c for _, c in self.stage_cycles()]
        done = {-1: cycles[0]}  # writer -> when its frame is written
        for e in self.engines:
            done[e.index] = cycles[e.index + 1] + max(done[b.writer] for b in self.inputs(e.index))
        return done[self.out_buffer.writer] + cycles[-1]

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.interval


def addr_width(depth: int) -> int:
    """Bits of an address into ``depth`` words (at least 1), as ``hw/`` computes it."""
    return max(1, (depth - 1).bit_length())


@dataclass(frozen=True)
class Buffer:
    """A frame buffer: a ring of ``banks`` frames from ``writer`` (an engine; -1 the input
    stream) to one port of ``reader`` (an engine; -1 the output stream). A tensor that several
    engines read is written into a copy per reader (stream duplication); a copy is as many
    frames deep as the path it skips has stages, plus one, so no engine waits on it."""

    index: int
    width: int
    depth: int
    banks: int = 2
    writer: int = -1
    reader: int = -1
    port: str = "rd"  # rd (the reader's input), sc<j> (its shortcut j), rd<j> (concat input j)

    @property
    def aw(self) -> int:
        return addr_width(self.depth)

    @property
    def block(self) -> bool:
        """In block RAM: LUT RAM costs about two thirds of a LUT per bit of width at any
        depth, so a buffer of at least ``BLOCK_BUFFER_BITS`` goes to block RAM."""
        return self.banks * self.depth * self.width >= BLOCK_BUFFER_BITS

    @property
    def ports(self) -> tuple[str, str, str, str]:
        """The reader's ready, address, data and done ports."""
        if self.port.startswith("sc"):
            return tuple(f"{self.port}_{p}" for p in ("ready", "addr", "data", "done"))  # type: ignore[return-value]
        j = self.port[2:]
        return (f"in{j}_ready", f"rd{j}_addr", f"rd{j}_data", f"rd{j}_done")

    @property
    def latency(self) -> int:
        """Cycles from read address to data: block RAM reads through its output register."""
        return 2 if self.block else 1


def pool_cycles(oh: int, ow: int, taps: int, rlat: int = 1) -> int:
    return oh * ow * taps + ENGINE_OVERHEAD + rlat - 1


def conv_cycles(
    oh: int,
    ow: int,
    reads: int,
    serial: int = 1,
    output: bool = True,
    rlat: int = 1,
    late: bool = False,
    split: bool = False,
) -> int:
    """An engine's cycles per frame: ``reads`` per pixel, and the pipeline after the last: a
    register after the popcounts, the multipliers' operands (output engine) or the sequencer's ``L``
    steps and its ROM read (threshold engine), the products, (the plane registered, for a
    multi-threshold or shortcuts: ``late``,) the write; a cycle more where the popcounts
    take two stages (``split``)."""
    tail = 3 if output else serial + 3 + int(late)
    return oh * ow * reads + ENGINE_OVERHEAD + rlat - 1 + tail + int(split)


def _code_width(lo: int, hi: int) -> int:
    return bits(min(lo, 0), max(hi, 0))


def _value_width(t: core.Tensor) -> int:
    """Bits per element of a tensor in a frame buffer: 1 for bits, else the codes' width."""
    return 1 if t.storage is core.Storage.BITS else _code_width(t.lo, t.hi)


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
    pass's sums do). A step list walks ``walked`` of the steps: those set in ``walk_bits`` (the
    packed bits of every step's row ``(g * taps + tap) * F + f``; empty: every step)."""

    passes: int
    pe: int
    chunks: int
    simd: int
    units: int
    serial: int
    taps: int
    walk_bits: bytes = b""
    walked: int = 0

    @property
    def steps(self) -> tuple[int, ...]:
        """The rows a step list walks, in order (empty: every step)."""
        if not self.walk_bits:
            return ()
        bits_ = np.unpackbits(np.frombuffer(self.walk_bits, dtype=np.uint8))
        return tuple(int(r) for r in np.flatnonzero(bits_[: self.passes * self.taps * self.chunks]))

    @property
    def rows(self) -> int:
        """Weight rows per lane: every step of a pixel (the steps walked)."""
        return self.walked or self.passes * self.taps * self.chunks

    @property
    def block(self) -> bool:
        return self.rows > BLOCK_ROWS

    @property
    def list_bits(self) -> int:
        """The step list's size: per step a tap, a chunk and two marks (0: no list)."""
        return self.walked * (addr_width(self.taps) + 1 + addr_width(self.chunks) + 2)

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
    """``[p, j, row]`` with ``row = (g * taps + tap) * F + f`` (or the step list's index):
    the weight bit lane ``p``'s column ``j`` meets on each step of a pixel."""
    grid = fold.grid(weight)  # g, p, f, j, tap
    rows = grid.transpose(1, 3, 0, 4, 2).reshape(fold.pe, fold.simd, -1).astype(np.uint8)
    return rows[:, :, list(fold.steps)] if fold.steps else rows


def _ones_table(weights: list[np.ndarray]) -> np.ndarray:
    """``[o, c, tap]`` prefix sums of the weight bits over every mask: the ones in any block
    of output and input channels at a tap in four reads (``_skip``; ``table[edges]`` picks
    a fold's passes)."""
    o, c, kh, kw = weights[0].shape
    ones = sum(w.reshape(o, c, kh * kw).astype(np.int64) for w in weights)
    table = np.zeros((o + 1, c + 1, kh * kw), dtype=np.int64)
    table[1:, 1:] = ones.cumsum(axis=0).cumsum(axis=1)
    return table


def _pass_edges(fold: Fold, o: int) -> np.ndarray:
    """The first output channel of each pass, and the end."""
    return np.minimum(np.arange(fold.passes + 1) * fold.pe, o)


def _skip(fold: Fold, passes: np.ndarray, full_first: bool) -> Fold:
    """The fold with a step list when some steps have every lane's weights zero (in every
    mask; ``passes``: the ``_ones_table`` rows at ``_pass_edges``): those are left out,
    except in the first pass when ``full_first`` (it counts ``T``); a pass keeps at least
    ``L`` steps (the earliest zero ones fill it up)."""
    if fold.walked or (full_first and fold.passes == 1):
        return fold
    c = passes.shape[1] - 1
    ce = np.minimum(np.arange(fold.chunks + 1) * fold.simd, c)
    t = passes[:, ce]  # g edges, f edges, tap
    ones = t[1:, 1:] - t[:-1, 1:] - t[1:, :-1] + t[:-1, :-1]  # g, f, tap
    live = (ones > 0).transpose(0, 2, 1).reshape(fold.passes, -1)  # g, (tap, f): walk order
    if full_first:
        live[0] = True
    if live.all():
        return fold
    for g in np.flatnonzero(live.sum(axis=1) < fold.serial):
        live[g, np.flatnonzero(~live[g])[: fold.serial - int(live[g].sum())]] = True
    return replace(fold, walk_bits=np.packbits(live).tobytes(), walked=int(live.sum()))


def step_list(rows: tuple[int, ...], kh: int, kw: int, chunks: int) -> str:
    """``hw/bnc_window.v``'s ``LIST`` for the steps ``rows`` (``(g * taps + tap) * F + f``):
    entry ``i = {last, first, f, kx, ky}`` from the lowest bit, a pass's first and last
    step marked."""
    yw, xw, fw = addr_width(kh), addr_width(kw), addr_width(chunks)
    ew = yw + xw + fw + 2
    passes = [r // (kh * kw * chunks) for r in rows]
    v = 0
    for i, r in enumerate(rows):
        tap, f = divmod(r % (kh * kw * chunks), chunks)
        ky, kx = divmod(tap, kw)
        first = i == 0 or passes[i - 1] != passes[i]
        last = i == len(rows) - 1 or passes[i + 1] != passes[i]
        e = ky | kx << yw | f << (yw + xw) | int(first) << (ew - 2) | int(last) << (ew - 1)
        v |= e << (i * ew)
    return f"{len(rows) * ew}'h{v:x}"


def _lanes(
    fold: Fold, weight: np.ndarray, block: bool, nb_w: int, mask: int = 0
) -> tuple[tuple[Lane, ...], int, int]:
    """The lanes of a fold over mask ``mask``'s weights; ``nb_w`` bits of popcount(b) end
    each block-ROM row (0: none)."""
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
        lanes.append(Lane(mask * fold.pe + p, mask, chans, tuple(cols), block_rom,
                          _pack(nb, max(nb_w, 1))))  # fmt: skip
    return tuple(lanes), live, dead


def _units(
    fold: Fold, coefs: list[tuple[int, ...]], coef_w: int, extra: list[int]
) -> tuple[Unit, ...]:
    """Unit ``u``'s ROM: entry ``g * L + i`` holds the coefficients of channel
    ``g * PE + i * U + u`` (``t`` in the low field; zeros past the layer), then its ``extra``
    bits (the points' weights)."""
    units = []
    zero = (0,) * len(coefs[0])
    top = len(zero) * coef_w
    for u in range(fold.units):
        words = []
        for g in range(fold.passes):
            for i in range(fold.serial):
                ch = g * fold.pe + i * fold.units + u
                if ch >= len(coefs):
                    words.append(_word(list(zero), coef_w))
                    continue
                word = int(_word(list(coefs[ch]), coef_w), 16) | extra[ch] << top
                words.append(f"{word:x}")
        units.append(Unit(u, tuple(words)))
    return tuple(units)


# The LUT model of a convolution engine (fitted to yosys synth_xilinx counts of CNV's layers).
COL_LUTS = 3.0  # a 1-bit column from a LUT ROM: the weight bit, the AND, its share of the sum
COL_BLOCK_LUTS = 2.2  # a 1-bit column whose weights come from a block ROM
LANE_LUTS = 2  # per bit of the lane's sum: the step's S and the accumulator
UNIT_LUTS = 2  # per bit of the plane: a threshold unit's adders
MUX_LUTS = 0.3  # per input bit per chunk: the chunk select
LIST_LUTS = 1 / 40  # per bit of a step list (LUT6 ROMs of 64 bits and their multiplexers)
UNIT_DSP_LUTS = 100  # the price of a threshold unit's two DSP multipliers, in LUTs


def conv_luts(
    fold: Fold,
    live: int,
    block: bool,
    qw: int,
    sum_w: int,
    coef_w: int,
    masks: int = 1,
    levels: int = 0,
) -> int:
    """The analytic LUT estimate of a convolution engine: its generated columns (over every
    mask), the lanes' accumulators, the threshold units (their operand selects over ``L``
    lanes, their DSPs at a price in LUTs, a multi-threshold's comparators), the chunk select,
    the shared ``T`` sum and the step list."""
    col = COL_BLOCK_LUTS if block else COL_LUTS
    plane_w = coef_w + sum_w + 1
    dsp = UNIT_DSP_LUTS * (masks + 1) / 2
    unit = UNIT_LUTS * plane_w * (1 + levels) + masks * (sum_w * fold.serial) // 3 + dsp
    mux = MUX_LUTS * fold.simd * qw * fold.chunks if fold.chunks > 1 else 0
    lanes = fold.pe * masks * LANE_LUTS * sum_w
    walk = LIST_LUTS * fold.list_bits
    return round(live * qw * col + lanes + fold.units * unit + mux + fold.simd * qw + walk)


def _late(step: ConvStep) -> bool:
    return step.mode is core.Mode.MULTI or bool(step.bit_adds) or bool(step.points)


def _folds(step: ConvStep, budget: int, in_lat: int, full_first: bool) -> list[Fold]:
    """The folds to weigh: for every number of passes, the most chunks that fit the budget
    (fewest columns) and one chunk (no select); the fastest fold if none fits. Each walks
    a step list where that saves steps (``_skip``)."""
    g = step.geo
    o, c = step.weight.shape[:2]
    taps = g.kh * g.kw
    passes = [o] if step.final else sorted({math.ceil(o / pe) for pe in range(1, o + 1)})
    chunks = sorted({math.ceil(c / simd) for simd in range(1, c + 1)})
    table = _ones_table([m.weight for m in step.masks])
    qw = _value_width(step.src)
    folds, fastest = [], None
    for gp in passes:
        fits: dict[bool, list[Fold]] = {False: [], True: []}  # without and with a step list
        rows = None  # the table at this pass count's edges (PE does not depend on F)
        for f in chunks:
            plain = Fold.of(o, c, taps, gp, f, step.final)
            if rows is None:
                rows = table[_pass_edges(plain, o)]
            for fold in dict.fromkeys((plain, _skip(plain, rows, full_first))):
                cyc = conv_cycles(g.oh, g.ow, fold.rows, fold.serial, step.final,
                                  max(2 if fold.block else 0, in_lat), _late(step),
                                  fold.simd * qw > SPLIT_W)  # fmt: skip
                if fastest is None or cyc < fastest[0]:
                    fastest = (cyc, fold)
                if cyc <= budget:
                    fits[fold.walked > 0].append(fold)
        for fit in fits.values():
            folds += [fit[0], fit[-1]] if len(fit) > 1 else fit
    return folds or [fastest[1]]  # type: ignore[index]


def _counting_ones(
    coefs: list[tuple[int, ...]], masks: tuple[core.Mask, ...], n: int
) -> list[tuple[int, ...]]:
    """The coefficients of lanes that count ones (``flat``): ``(2t, 2s_k, c - t*n - sum_k
    s_k*K_ok)`` with ``n`` the bits of a window and ``K_ok`` the ones of mask k's channel."""
    k = len(masks)
    ones = [m.weight.reshape(len(coefs), -1).sum(axis=1) for m in masks]
    out = []
    for ch, cf in enumerate(coefs):
        t, ss, cs = cf[0], cf[1 : 1 + k], cf[1 + k :]
        shift = t * n + sum(s_ * int(kk[ch]) for s_, kk in zip(ss, ones, strict=True))
        out.append((2 * t, *(2 * s_ for s_ in ss), *(c_ - shift for c_ in cs)))
    return out


def _shortcuts(
    step: ConvStep, bufs: list[Buffer], first: int
) -> tuple[list[Shortcut], list[list[int]], list[int], list[int], int]:
    """A step's shortcuts read from ``bufs`` (its adds, then its points), their coefficient
    fields from ``first`` on: the shortcuts, per channel their fields, the constant each
    takes from c, the points' weight bits, and the bound of their terms."""
    o = step.geo.o
    found: list[Shortcut] = []
    fields: list[list[int]] = [[] for _ in range(o)]
    shift, extra = [0] * o, [0] * o
    bound, field, wbit = 0, first, 0
    for add, buf in zip(step.bit_adds, bufs, strict=False):
        is_bits = add.src.storage is core.Storage.BITS
        qw = _value_width(add.src)
        for ch in range(o):
            fields[ch].append(2 * add.s[ch] if is_bits else add.s[ch])
            shift[ch] += add.s[ch] if is_bits else 0
        mag = 2 if is_bits else max(-add.src.lo, add.src.hi)
        bound += max(abs(v) for v in add.s) * mag
        found.append(Shortcut("add", buf.index, add.src.c, add.src.shape[2], 1, 1, qw,
                              buf.latency, buf.aw, field))  # fmt: skip
        field += 1
    for pt, buf in zip(step.points, bufs[len(step.bit_adds) :], strict=True):
        cin = pt.weight.shape[1]
        w = pt.weight.reshape(o, cin)
        for ch in range(o):
            fields[ch] += [2 * pt.t[ch], 2 * pt.s[ch]]
            shift[ch] += pt.t[ch] * cin + pt.s[ch] * int(w[ch].sum())
            extra[ch] |= sum(1 << j for j in range(cin) if w[ch, j]) << wbit
        bound += 2 * (max(abs(v) for v in pt.t) + max(abs(v) for v in pt.s)) * cin
        found.append(Shortcut("point", buf.index, cin, pt.src.shape[2], *pt.stride, 1,
                              buf.latency, buf.aw, field, wbit))  # fmt: skip
        field, wbit = field + 2, wbit + cin
    return found, fields, shift, extra, bound


def _conv(index: int, step: ConvStep, budget: int, in_lat: int, bufs: list[Buffer]) -> ConvEngine:
    g = step.geo
    o, c, kh, kw = step.weight.shape
    final = step.final
    bits_in = step.bits_in
    lo, hi = step.value_range
    qw = _value_width(step.src)
    mag = max(-lo, hi)
    taps = kh * kw
    masks = step.masks
    k = len(masks)
    # per channel: t, each mask's s, then c (the threshold; a multi-threshold's every level;
    # the output plane has none). The thresholds are narrowed in the IR (NarrowThresholds).
    multi = step.mode is core.Mode.MULTI
    levels: list[tuple[int, ...]]
    if multi:
        assert step.code_out is not None
        levels = [tuple(int(row[ch]) for row in step.code_out.c) for ch in range(o)]
    else:
        levels = [(int(v),) for v in step.c]
    coefs = [(step.t[ch], *(m.s[ch] for m in masks), *levels[ch]) for ch in range(o)]
    # Without padding every step is inside the image: T = 2*PT - C*taps and S_k = 2*P_k - K_ok
    # over a pass (PT, P_k the ones counted, K_ok the ones of mask k's b[o]), so the lanes count
    # ones and t*T + sum_k s_k*S_k + c = 2t*PT + sum_k 2s_k*P_k + (c - t*C*taps - sum_k
    # s_k*K_ok), exactly.
    flat = bits_in and not final and g.ph == 0 and g.pw == 0
    if flat:
        coefs = _counting_ones(coefs, masks, c * taps)
    shortcuts, sc_fields, shift, extra, bound = _shortcuts(step, bufs, len(coefs[0]))
    coefs = [(*cf[: 1 + k], *(c_ - shift[ch] for c_ in cf[1 + k :]), *sc_fields[ch])
             for ch, cf in enumerate(coefs)]  # fmt: skip
    coef_w = bits(*(v for trip in coefs for v in trip))
    term_w = 0
    if shortcuts:
        widest = max(max(s_.qw, s_.pc_w) for s_ in shortcuts)
        term_w = max(bits(-bound, bound), coef_w, widest) + 1
    sum_w = bits(c * taps * mag)
    n_levels = len(levels[0]) if multi else 0
    cost = {}
    read_lat = max([in_lat, *(s_.lat for s_ in shortcuts)])
    for fold in _folds(step, budget, read_lat, any(cf[0] for cf in coefs)):
        live = sum(fold.live(m.weight) for m in masks)
        cost[fold] = conv_luts(fold, live, fold.block, qw, max(sum_w, fold.tap_w(mag)), coef_w,
                               k, n_levels)  # fmt: skip
    fold = min(cost, key=lambda f: (cost[f], -f.passes * f.chunks))
    tap_w = fold.tap_w(mag)
    sum_w = max(sum_w, tap_w)
    lanes: list[Lane] = []
    live = dead = 0
    for j, m in enumerate(masks):
        found, lv, dd = _lanes(fold, m.weight, fold.block, tap_w if bits_in and not flat else 0, j)
        lanes += found
        live, dead = live + lv, dead + dd
    one_hot = sorted({col.row for lane in lanes for col in lane.columns if col.kind == "tap"})
    units = () if final else _units(fold, coefs, coef_w, extra)
    out_coefs = tuple(_pack([coefs[ch][j] for ch in range(o)], coef_w) for j in range(1 + k))
    code_w, code_base = 1, 0
    if multi:
        assert step.code_out is not None
        code_w = _code_width(step.dst.lo, step.dst.hi)
        code_base = step.code_out.qmin - step.code_out.zero_point
    return ConvEngine(
        **g.fields(), index=index, name=step.name, in_lat=in_lat,
        passes=fold.passes, pe=fold.pe, chunks=fold.chunks, simd=fold.simd, units=fold.units,
        serial=fold.serial, masks=k, levels=n_levels, code_w=code_w, code_base=code_base,
        bits_in=bits_in, flat=flat, qw=qw, sum_w=sum_w, tap_w=tap_w, coef_w=coef_w,
        output=final, block=fold.block, rows=fold.rows, split=fold.simd * qw > SPLIT_W,
        walk=step_list(fold.steps, kh, kw, fold.chunks) if fold.steps else "",
        lanes=tuple(lanes), thresholds=units,
        one_hot_rows=tuple(one_hot), shortcuts=tuple(shortcuts), term_w=term_w,
        coefs=out_coefs if final else (),
        live=live, dead=dead, luts=cost[fold],
    )  # fmt: skip


def _min_cycles(step: ConvStep) -> int:
    g = step.geo
    o, c = step.weight.shape[:2]
    fold = Fold.of(o, c, g.kh * g.kw, o if step.final else 1, 1, step.final)
    return conv_cycles(g.oh, g.ow, fold.rows, fold.serial, step.final, late=_late(step),
                       split=c * _value_width(step.src) > SPLIT_W)  # fmt: skip


def _supported(graph: Graph) -> None:
    """Refuse what the engines do not compute yet: codes that requantize (a rounded, clamped
    plane; multi-thresholds are built)."""
    for node in graph.nodes:
        if isinstance(node.op, O.Requantize):
            raise UnsupportedGraph(
                f"fpga: layer '{node.op.name}' writes requantized codes (more than"
                f" {MULTI_MAX} thresholds, or an add kept as codes), which the fpga target does"
                " not build yet (it builds up to 4-bit activations as multi-thresholds; use"
                " --target c, arm64, armv7 or cortex-m4/m7)"
            )


def _streamable(sched: core.Schedule) -> None:
    """Refuse, with one line, the steps the engines do not compute yet."""
    for step in sched.steps:
        if not isinstance(step, ConvStep):
            continue
        if step.acc_in is not None or step.dst.storage is core.Storage.PLANE and not step.final:
            raise UnsupportedGraph(
                f"fpga: layer '{step.name}' adds a partial plane (a branch that is not an"
                " identity or a one-mask 1x1 layer over bits), which the fpga target does not"
                " build yet (use --target c, arm64, armv7 or cortex-m4/m7)"
            )
        if step.final and (step.bit_adds or step.points):
            raise UnsupportedGraph(
                f"fpga: the output layer '{step.name}' adds a shortcut, which the fpga target"
                " does not build yet (use --target c, arm64, armv7 or cortex-m4/m7)"
            )


def lower(
    graph: Graph, name: str, fps_target: float | None = None, clock_mhz: float | None = None
) -> FpgaView:
    clock = 100.0 if clock_mhz is None else float(clock_mhz)
    if not clock > 0 or not math.isfinite(clock):
        raise BncError(f"--clock-mhz must be a positive number of MHz, not {clock_mhz!r}")
    if fps_target is not None and (not fps_target > 0 or not math.isfinite(fps_target)):
        raise BncError(f"--fps-target must be a positive frame rate, not {fps_target!r}")
    _supported(graph)
    sched = core.schedule(NarrowThresholds().apply(graph), fuse_points=True, merge_masks=True,
                          ride_identities=True)  # fmt: skip
    _streamable(sched)
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
        elif isinstance(step, core.SumPoolStep):
            floor.append(pool_cycles(1, 1, step.src.shape[1] * step.src.shape[2]))
    if fps_target is None:
        budget = max(floor)
    else:
        budget = max(1, int(clock * 1e6 // fps_target))

    engines: list[Engine] = []
    buffers: list[Buffer] = []
    producer = {inp.dst.id: -1}  # tensor -> the engine that writes it (-1: the input stream)
    level = {-1: 0}  # an engine's stage in the pipeline: the most stages before it, plus one

    def shape_of(writer: int) -> tuple[int, int]:
        if writer < 0:
            return c0 * qw, h0 * w0
        return engines[writer].out_word, engines[writer].out_depth

    def feed(tensor: core.Tensor, port: str, reader: int, at: int) -> Buffer:
        writer = producer[tensor.id]
        buf = Buffer(len(buffers), *shape_of(writer), banks=at - level[writer] + 1,
                     writer=writer, reader=reader, port=port)  # fmt: skip
        buffers.append(buf)
        return buf

    for step in sched.steps:
        reads = sched.reads(step)
        at = 1 + max(level[producer[t.id]] for t in reads)
        index = len(engines)
        if isinstance(step, ConcatStep):
            srcs = [feed(t, f"rd{j}", index, at) for j, t in enumerate(step.srcs)]
            c, h, w = step.dst.shape
            geo = core.Geometry(c, h, w, c, h, w, 1, 1, 1, 1, 0, 0)
            engine: Engine = ConcatEngine(
                **geo.fields(), index=index, name=step.name, in_lat=srcs[0].latency,
                widths=tuple(b.width for b in srcs), lats=tuple(b.latency for b in srcs),
            )  # fmt: skip
        else:
            main = feed(step.src, "rd", index, at)
            if isinstance(step, ConvStep):
                extra = [feed(t, f"sc{j}", index, at) for j, t in enumerate(reads[1:])]
                engine = _conv(index, step, budget, main.latency, extra)
            elif isinstance(step, PoolStep):
                engine = PoolEngine(
                    **step.geo.fields(), index=index, name=step.name, in_lat=main.latency,
                    and_mask=_hex(list(step.and_mask.astype(np.uint8))),
                    qw=_value_width(step.src),
                )  # fmt: skip
            else:
                c, h, w = step.src.shape
                vw = _value_width(step.src)
                geo = core.Geometry(c, h, w, c, 1, 1, h, w, 1, 1, 0, 0)
                engine = SumEngine(
                    **geo.fields(), index=index, name=step.name, in_lat=main.latency, qw=vw,
                    sum_w=max(vw + 1, _code_width(step.dst.lo, step.dst.hi)),
                )  # fmt: skip
        engines.append(engine)
        producer[step.dst.id] = index
        level[index] = at
    if not engines or not isinstance(engines[-1], ConvEngine) or not engines[-1].output:
        raise UnsupportedGraph("the network must end with its output layer (a binary layer)")
    last = len(engines) - 1
    feed(sched.output, "rd", -1, level[last] + 1)
    return FpgaView(
        name, tuple(engines), tuple(buffers), c0, h0, w0, in_bits, qw, scale, qmin, qmax,
        *out_shape, clock_mhz=clock, fps_target=fps_target, budget=budget, input_step=inp,
        levels=tuple(level[e.index] for e in engines),
    )  # fmt: skip
